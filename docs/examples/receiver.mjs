// A vidgen webhook receiver in Node (no dependency): verifies the v1 signature (HMAC-SHA256
// over id.timestamp.body, constant-time), refuses stale timestamps, handles each webhook-id
// once. Serve it behind your HTTPS proxy.   WEBHOOK_SECRET=whsec_... PORT=8080 node receiver.mjs
import { createHmac, timingSafeEqual } from "node:crypto";
import { createServer } from "node:http";

const key = Buffer.from(process.env.WEBHOOK_SECRET.replace(/^whsec_/, ""), "base64");
const seen = new Set();

createServer((req, res) => {
  const chunks = [];
  req.on("data", (c) => chunks.push(c)).on("end", () => {
    const body = Buffer.concat(chunks).toString("utf8");
    const [id, ts, sigs] = ["webhook-id", "webhook-timestamp", "webhook-signature"].map((h) => req.headers[h] ?? "");
    const mac = createHmac("sha256", key).update(`${id}.${ts}.${body}`).digest();
    const ok = (s) => {
      const sig = Buffer.from(s.slice(3), "base64");
      return s.startsWith("v1,") && sig.length === mac.length && timingSafeEqual(sig, mac);
    };
    if (!sigs.split(" ").some(ok) || Math.abs(Date.now() / 1000 - Number(ts)) > 300) return res.writeHead(401).end();
    if (!seen.has(id)) { seen.add(id); const event = JSON.parse(body); console.log(event.type, event.data.generationId ?? "-"); }
    res.writeHead(204).end();
  });
}).listen(Number(process.env.PORT ?? 8080), "127.0.0.1");
