// The "New video" form: an image (picked or dropped, uploaded at once, previewed), a prompt
// with its character count, and model / ratio / duration chosen from GET /api/models.
// Submitting sends POST /api/videos/generate with an Idempotency-Key: a double click, or a
// retry after a lost answer, makes one generation.
import { api, type Catalog, type Generation, type ModelInfo } from "./api/client";
import type { components } from "./api/schema";
import { explain } from "./api/problems";
import { byId, option } from "./dom";

export interface FormHooks {
  /** A generation was accepted: show its card. */
  created(generation: Generation): void;
}

type GenerateBody = components["schemas"]["GenerateRequest"];

interface Upload {
  file: File;
  done: Promise<string | null>; // the project id, or null when the upload was refused
}

export function startForm(hooks: FormHooks): { load(): Promise<void>; enable(on: boolean): void } {
  const fields = byId<HTMLFieldSetElement>("generate-fields");
  const form = byId<HTMLFormElement>("generate-form");
  const input = byId<HTMLInputElement>("image");
  const drop = byId("drop");
  const preview = byId<HTMLImageElement>("preview");
  const imageStatus = byId("image-status");
  const prompt = byId<HTMLTextAreaElement>("prompt");
  const count = byId("prompt-count");
  const modelSelect = byId<HTMLSelectElement>("model");
  const ratioSelect = byId<HTMLSelectElement>("ratio");
  const durationSelect = byId<HTMLSelectElement>("duration");
  const estimate = byId("estimate");
  const submit = byId<HTMLButtonElement>("submit");
  const error = byId("form-error");

  let catalog: Catalog | null = null;
  let upload: Upload | null = null;
  let busy = false;
  let idempotencyKey: string | null = null; // kept until the API has answered this request

  const model = (): ModelInfo | undefined =>
    catalog?.models.find((m) => m.name === modelSelect.value);

  const showCount = (): void => {
    const max = model()?.promptMaxLength ?? prompt.maxLength;
    const used = prompt.value.length; // UTF-16 code units, as the API counts
    count.textContent = `${used} / ${max} characters`;
    count.classList.toggle("near", used > max * 0.9);
  };

  const showEstimate = (): void => {
    const rate = model()?.creditsPerSecond;
    const seconds = Number(durationSelect.value);
    estimate.textContent =
      rate != null && seconds ? `Estimated cost: ${rate * seconds} credits (${rate} per second)` : "";
  };

  const fillChoices = (): void => {
    const m = model();
    if (!m) return;
    const ratio = m.ratios.includes(ratioSelect.value) ? ratioSelect.value : m.defaultRatio;
    const duration = m.durations.includes(Number(durationSelect.value))
      ? Number(durationSelect.value)
      : m.defaultDuration;
    ratioSelect.replaceChildren(...m.ratios.map((r) => option(r, r.replace(":", " × "), r === ratio)));
    durationSelect.replaceChildren(
      ...m.durations.map((d) => option(String(d), `${d} s`, d === duration)),
    );
    prompt.maxLength = m.promptMaxLength;
    showCount();
    showEstimate();
  };

  const startUpload = (file: File): void => {
    error.textContent = "";
    preview.src = URL.createObjectURL(file);
    preview.hidden = false;
    imageStatus.textContent = `Uploading ${file.name}…`;
    imageStatus.className = "status-line";
    const body = new FormData();
    body.append("file", file);
    const done = api
      .POST("/api/images/upload", { body: { file: "" }, bodySerializer: () => body })
      .then(({ data, error: problem, response }) => {
        if (upload?.file !== file) return null; // another image was picked meanwhile
        if (data) {
          imageStatus.textContent = `${file.name}: ${data.width} × ${data.height}, ready.`;
          return data.projectId;
        }
        imageStatus.textContent = explain(response, problem);
        imageStatus.className = "status-line error";
        return null;
      })
      .catch(() => {
        imageStatus.textContent = explain(undefined, null);
        imageStatus.className = "status-line error";
        return null;
      });
    upload = { file, done };
    idempotencyKey = null; // a new image is a new request
  };

  input.addEventListener("change", () => {
    const file = input.files?.[0];
    if (file) startUpload(file);
  });
  drop.addEventListener("dragover", (event) => {
    event.preventDefault();
    drop.classList.add("over");
  });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (event) => {
    event.preventDefault();
    drop.classList.remove("over");
    const files = event.dataTransfer?.files;
    if (!files?.length || fields.disabled) return;
    input.files = files;
    startUpload(files[0] as File);
  });
  prompt.addEventListener("input", () => {
    showCount();
    idempotencyKey = null;
  });
  modelSelect.addEventListener("change", () => {
    fillChoices();
    idempotencyKey = null;
  });
  for (const select of [ratioSelect, durationSelect]) {
    select.addEventListener("change", () => {
      showEstimate();
      idempotencyKey = null;
    });
  }

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    if (busy) return; // the second click of a double click
    error.textContent = "";
    if (!upload) {
      error.textContent = "Pick an image first.";
      input.focus();
      return;
    }
    if (!prompt.value.trim()) {
      error.textContent = "Write a prompt: what should happen in the video?";
      prompt.focus();
      return;
    }
    busy = true;
    submit.disabled = true;
    submit.textContent = "Sending…";
    idempotencyKey ??= crypto.randomUUID();
    try {
      const projectId = await upload.done;
      if (!projectId) {
        error.textContent = "The image was not accepted: pick another one.";
        input.focus();
        return;
      }
      const { data, error: problem, response } = await api.POST("/api/videos/generate", {
        params: { header: { "Idempotency-Key": idempotencyKey } },
        body: {
          projectId,
          prompt: prompt.value,
          model: modelSelect.value as GenerateBody["model"],
          ratio: ratioSelect.value as GenerateBody["ratio"],
          duration: Number(durationSelect.value),
        },
      });
      idempotencyKey = null; // answered: the next click is a new request
      if (!data) {
        error.textContent = explain(response, problem);
        return;
      }
      const status = await api.GET("/api/videos/status/{generation_id}", {
        params: { path: { generation_id: data.generationId } },
      });
      if (status.data) hooks.created(status.data);
    } catch {
      // the answer was lost: the same key is sent again on the next click
      error.textContent = explain(undefined, null);
    } finally {
      busy = false;
      submit.disabled = false;
      submit.textContent = "Generate video";
    }
  });

  return {
    async load() {
      const { data, error: problem, response } = await api.GET("/api/models");
      if (!data) {
        error.textContent = `The models could not be loaded. ${explain(response, problem)}`;
        return;
      }
      catalog = data;
      modelSelect.replaceChildren(
        ...data.models.map((m) => option(m.name, m.name, m.name === data.defaultModel)),
      );
      fillChoices();
    },
    enable(on: boolean) {
      fields.disabled = !on;
    },
  };
}
