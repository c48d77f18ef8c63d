// One generation's card: status, progress, elapsed time, cost, and once completed the video
// with its poster and a download link; the user-facing message of a failed or cancelled one;
// a cancel button while it runs. Rendered from the generated GenerationView type: a field the
// API adds appears in the card by adding one line to DETAILS.
import { api, type Generation, TERMINAL } from "./api/client";
import { explain } from "./api/problems";
import { h } from "./dom";
import type { StreamState } from "./stream";

interface Detail {
  label: string;
  value(g: Generation, now: number): string | null;
}

const seconds = (ms: number): string => {
  const s = Math.max(0, Math.round(ms / 1000));
  return s < 60 ? `${s} s` : `${Math.floor(s / 60)} min ${s % 60} s`;
};

const clock = (at: string): string =>
  new Date(at).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" });

export function elapsed(g: Generation, now: number): string {
  const start = Date.parse(g.createdAt);
  const end = g.completedAt ? Date.parse(g.completedAt) : now;
  return seconds(end - start);
}

const WAITING_TEXT: Record<NonNullable<Generation["queueReason"]>, (g: Generation) => string> = {
  waiting_for_capacity: () => "waiting for a free slot",
  submitting: () => "starting",
  daily_cap_reached: (g) =>
    "Runway's daily limit is reached" + (g.waitingUntil ? `, until ≈ ${clock(g.waitingUntil)}` : ""),
  organization_out_of_credits: () => "waiting for the organisation's Runway credits",
};

/** What the card lists, in order (keys are checked against the API's types). */
export const DETAILS: Record<string, Detail> = {
  elapsed: { label: "Elapsed", value: (g, now) => elapsed(g, now) },
  costCredits: {
    label: "Cost",
    value: (g) =>
      g.costCredits == null ? null : `${g.costFinal ? "" : "≈ "}${g.costCredits} credits`,
  },
  queuePosition: {
    label: "In queue",
    value: (g) =>
      g.queuePosition == null
        ? null
        : `#${g.queuePosition}, ${WAITING_TEXT[g.queueReason ?? "waiting_for_capacity"](g)}`,
  },
  estimatedStartAt: {
    label: "Starts",
    value: (g) =>
      g.status === "queued" && g.estimatedStartAt ? `≈ ${clock(g.estimatedStartAt)}` : null,
  },
  estimatedCompletionAt: {
    label: "Ready",
    value: (g) =>
      g.estimatedCompletionAt && !TERMINAL.has(g.status)
        ? `≈ ${clock(g.estimatedCompletionAt)}` +
          (g.estimatedCompletionP90At ? ` (9 in 10 by ${clock(g.estimatedCompletionP90At)})` : "")
        : null,
  },
  model: { label: "Model", value: (g) => `${g.model}, ${g.ratio.replace(":", " × ")}, ${g.duration} s` },
  createdAt: { label: "Created", value: (g) => new Date(g.createdAt).toLocaleString() },
} satisfies Partial<Record<keyof Generation | "elapsed", Detail>>;

const STATUS_TEXT: Record<Generation["status"], string> = {
  queued: "Queued",
  generating: "Generating",
  processing: "Processing",
  completed: "Completed",
  failed: "Failed",
  cancelled: "Cancelled",
};

export class Card {
  readonly el: HTMLLIElement;
  private generation: Generation;
  private streamState: StreamState = "ended";
  private videoId: string | null = null; // the video URL shown is for this generation state
  private readonly status = h("p", { class: "status", role: "status", "aria-live": "polite" });
  private readonly bar = h("progress", { max: 100, value: 0 });
  private readonly details = h("dl", { class: "details" });
  private readonly media = h("div", { class: "media" });
  private readonly message = h("p", { class: "message" });
  private readonly actions = h("div", { class: "actions" });

  constructor(generation: Generation) {
    this.generation = generation;
    const title = h("h3", { class: "prompt", title: generation.prompt }, generation.prompt);
    this.bar.setAttribute("aria-label", "Progress");
    this.el = h(
      "li",
      { class: "card", "data-generation-id": generation.generationId },
      h("article", { "aria-label": `Video: ${generation.prompt}` }, title, this.status, this.bar,
        this.media, this.message, this.details, this.actions),
    );
    this.render();
  }

  get id(): string {
    return this.generation.generationId;
  }

  get finished(): boolean {
    return TERMINAL.has(this.generation.status);
  }

  update(generation: Generation): void {
    if (generation.updatedAt < this.generation.updatedAt) return; // an older snapshot
    this.generation = generation;
    this.render();
  }

  setStream(state: StreamState): void {
    this.streamState = state;
    this.el.dataset["stream"] = state;
    this.renderStatus();
  }

  tick(now: number): void {
    const dd = this.details.querySelector<HTMLElement>('[data-detail="elapsed"]');
    if (dd) dd.textContent = elapsed(this.generation, now);
  }

  private renderStatus(): void {
    const g = this.generation;
    const pct = Math.round(g.progress * 100);
    let text = STATUS_TEXT[g.status];
    if (!this.finished) text += ` · ${pct}%`;
    if (g.cancelRequestedAt && !this.finished) text += " · cancelling…";
    if (this.streamState === "reconnecting" && !this.finished) text += " · reconnecting…";
    this.status.textContent = text;
  }

  private render(): void {
    const g = this.generation;
    this.el.dataset["status"] = g.status;
    this.renderStatus();
    this.bar.value = g.status === "completed" ? 100 : Math.round(g.progress * 100);
    this.bar.hidden = this.finished && g.status !== "completed";
    this.bar.setAttribute("aria-valuetext", `${Math.round(g.progress * 100)}%`);

    const now = Date.now();
    this.details.replaceChildren(
      ...Object.entries(DETAILS).flatMap(([key, d]) => {
        const value = d.value(g, now);
        return value == null ? [] : [h("dt", {}, d.label), h("dd", { "data-detail": key }, value)];
      }),
    );

    this.message.textContent =
      g.status === "failed"
        ? (g.errorMessage ?? "This video could not be made.")
        : g.status === "cancelled"
          ? (g.errorMessage ?? "Cancelled.")
          : "";
    this.message.hidden = !this.message.textContent;

    if (g.status === "completed" && g.videoUrl && this.videoId !== g.videoUrl) {
      this.videoId = g.videoUrl;
      this.media.replaceChildren(this.video(g));
    }
    this.renderActions();
  }

  private video(g: Generation): HTMLVideoElement {
    const video = h("video", {
      controls: true,
      preload: "metadata",
      playsinline: true,
      src: g.videoUrl,
      poster: g.thumbnailUrl,
      "aria-label": `Video: ${g.prompt}`,
    });
    let refreshed = false;
    video.addEventListener("error", () => {
      if (refreshed) return; // the presigned URL may have expired: ask for a fresh one, once
      refreshed = true;
      void api
        .GET("/api/videos/status/{generation_id}", {
          params: { path: { generation_id: g.generationId } },
        })
        .then(({ data }) => data && this.update(data));
    });
    return video;
  }

  private renderActions(): void {
    const g = this.generation;
    const buttons: HTMLElement[] = [];
    if (!this.finished) {
      const cancel = h("button", { type: "button", class: "secondary" }, "Cancel");
      cancel.disabled = g.cancelRequestedAt != null;
      cancel.setAttribute("aria-label", `Cancel: ${g.prompt}`);
      cancel.addEventListener("click", () => void this.cancel(cancel));
      buttons.push(cancel);
    }
    if (g.status === "completed" && g.videoUrl) {
      buttons.push(
        h("a", {
          class: "button",
          href: g.videoUrl,
          download: `vidgen-${g.generationId}.mp4`,
          target: "_blank",
          rel: "noopener",
          "aria-label": `Download: ${g.prompt}`,
        }, "Download"),
      );
    }
    this.actions.replaceChildren(...buttons);
  }

  private async cancel(button: HTMLButtonElement): Promise<void> {
    button.disabled = true;
    try {
      const { data, error, response } = await api.POST("/api/videos/{generation_id}/cancel", {
        params: { path: { generation_id: this.id } },
      });
      if (data) this.update(data);
      else {
        this.message.textContent = explain(response, error);
        this.message.hidden = false;
        button.disabled = response.status === 409;
      }
    } catch {
      this.message.textContent = explain(undefined, null);
      this.message.hidden = false;
      button.disabled = false;
    }
  }
}
