// A generation's live stream: EventSource on GET /api/videos/{id}/events.
//
// Each `generation` event carries the whole generation (the event id is its version). When
// the connection drops (network, a gateway restart), the browser reconnects by itself and
// sends Last-Event-ID, so the gateway sends only what is newer. When the browser gives up
// (the server answered an error, or 204: finished and already seen), the status is read once
// and, if the generation is still running, a new stream is opened after a pause.
import { api, type Generation, streamUrl, TERMINAL } from "./api/client";

export type StreamState = "connecting" | "live" | "reconnecting" | "ended";

export interface Follower {
  update(generation: Generation): void;
  state(state: StreamState): void;
}

export function follow(generationId: string, to: Follower): () => void {
  let source: EventSource | null = null;
  let stopped = false;
  let retry = 1000;
  let timer: number | undefined;

  const stop = (): void => {
    stopped = true;
    source?.close();
    window.clearTimeout(timer);
  };

  const finish = (generation: Generation): void => {
    to.update(generation);
    stop();
    to.state("ended");
  };

  const recover = async (): Promise<void> => {
    try {
      const { data, response } = await api.GET("/api/videos/status/{generation_id}", {
        params: { path: { generation_id: generationId } },
      });
      if (data && TERMINAL.has(data.status)) return finish(data);
      if (data) to.update(data);
      if (response.status === 404 || response.status === 401) return stop();
    } catch {
      // unreachable: try again below
    }
    if (stopped) return;
    timer = window.setTimeout(open, retry);
    retry = Math.min(retry * 2, 15000);
  };

  function open(): void {
    if (stopped) return;
    to.state(source ? "reconnecting" : "connecting");
    const es = new EventSource(streamUrl(generationId));
    source = es;
    es.addEventListener("open", () => {
      retry = 1000;
      to.state("live");
    });
    es.addEventListener("generation", (event) => {
      const generation = JSON.parse((event as MessageEvent<string>).data) as Generation;
      if (TERMINAL.has(generation.status)) finish(generation);
      else to.update(generation);
    });
    es.addEventListener("error", () => {
      if (stopped) return;
      to.state("reconnecting");
      if (es.readyState === EventSource.CLOSED) void recover(); // the browser gave up
    });
  }

  open();
  return stop;
}
