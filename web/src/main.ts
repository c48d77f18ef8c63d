// vidgen studio: sign in, upload an image, prompt, watch the video being made.
import "./styles.css";
import { startAuth } from "./auth";
import { startForm } from "./form";
import { Gallery } from "./gallery";

const gallery = new Gallery();
const form = startForm({ created: (g) => gallery.add(g) });
void form.load();
startAuth((session) => {
  form.enable(session !== null);
  if (session) void gallery.reload();
  else gallery.clear();
});
