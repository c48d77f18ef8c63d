// "Your videos": the caller's generations, newest first, paged with the list API's cursor and
// filtered by status (kept in the URL, so a reload shows the same view). Unfinished cards
// follow their live stream.
import { api, type Generation, type Status } from "./api/client";
import { explain } from "./api/problems";
import { Card } from "./card";
import { byId } from "./dom";
import { follow } from "./stream";

const DEFAULT_PAGE = 12;

export class Gallery {
  private readonly grid = byId<HTMLUListElement>("grid");
  private readonly more = byId<HTMLButtonElement>("more");
  private readonly empty = byId("videos-empty");
  private readonly error = byId("videos-error");
  private readonly filter = byId<HTMLSelectElement>("status-filter");
  private readonly cards = new Map<string, Card>();
  private readonly streams = new Map<string, () => void>();
  private cursor: string | null = null;
  private generationToken = 0; // discards answers of a load that was superseded
  private readonly pageSize: number;

  constructor() {
    const params = new URLSearchParams(location.search);
    this.filter.value = params.get("status") ?? "";
    const limit = Number(params.get("limit"));
    this.pageSize = Number.isInteger(limit) && limit >= 1 && limit <= 100 ? limit : DEFAULT_PAGE;
    this.filter.addEventListener("change", () => {
      const url = new URL(location.href);
      if (this.filter.value) url.searchParams.set("status", this.filter.value);
      else url.searchParams.delete("status");
      history.replaceState(null, "", url);
      void this.reload();
    });
    this.more.addEventListener("click", () => void this.page());
    window.setInterval(() => {
      const now = Date.now();
      for (const card of this.cards.values()) if (!card.finished) card.tick(now);
    }, 1000);
  }

  clear(): void {
    this.generationToken++;
    for (const stop of this.streams.values()) stop();
    this.streams.clear();
    this.cards.clear();
    this.grid.replaceChildren();
    this.cursor = null;
    this.more.hidden = true;
    this.empty.hidden = true;
    this.error.textContent = "";
  }

  async reload(): Promise<void> {
    this.clear();
    await this.page();
  }

  /** A generation just made on this page: first in the grid, followed live. */
  add(generation: Generation): void {
    if (this.filter.value && this.filter.value !== generation.status) {
      this.filter.value = "";
      this.filter.dispatchEvent(new Event("change"));
      return; // the reload shows it
    }
    if (this.cards.has(generation.generationId)) return;
    const card = this.show(generation);
    this.grid.prepend(card.el);
    this.empty.hidden = true;
  }

  private show(generation: Generation): Card {
    const card = new Card(generation);
    this.cards.set(card.id, card);
    if (!card.finished) {
      this.streams.set(
        card.id,
        follow(card.id, {
          update: (g) => card.update(g),
          state: (s) => {
            card.setStream(s);
            if (s === "ended") this.streams.delete(card.id);
          },
        }),
      );
    }
    return card;
  }

  private async page(): Promise<void> {
    const token = this.generationToken;
    this.more.disabled = true;
    try {
      const { data, error, response } = await api.GET("/api/videos", {
        params: {
          query: {
            status: (this.filter.value || undefined) as Status | undefined,
            cursor: this.cursor ?? undefined,
            limit: this.pageSize,
          },
        },
      });
      if (token !== this.generationToken) return;
      if (!data) {
        this.error.textContent = explain(response, error);
        return;
      }
      for (const g of data.items) {
        if (!this.cards.has(g.generationId)) this.grid.append(this.show(g).el);
      }
      this.cursor = data.nextCursor;
      this.more.hidden = data.nextCursor == null;
      this.empty.hidden = this.cards.size > 0;
    } catch {
      if (token === this.generationToken) this.error.textContent = explain(undefined, null);
    } finally {
      this.more.disabled = false;
    }
  }
}
