// The account page with the typed client of examples/web-bff (CONTRACT section 8). Build it with:
//   curl -s http://127.0.0.1:9901/admin/openapi.json > openapi.json
//   bff client --lang typescript --openapi openapi.json --out web/
//   tsc --strict --target es2022 --module es2022 --moduleResolution bundler --outDir web/js web/index.ts
// and serve web/ (index.html loads js/index.js). tests/client.rs does exactly that in Chromium.
import { createClient, type AccountPage } from "./client.js";

const params = new URLSearchParams(location.search);
const api = createClient({
  baseUrl: params.get("bff") ?? "http://127.0.0.1:8080",
  // The BFF's CORS allows credentials: the page's cookies go along.
  withCredentials: true,
});

function text(id: string, value: string): void {
  const el = document.getElementById(id);
  if (el !== null) el.textContent = value;
}

function render(page: AccountPage, partial: boolean): void {
  text("name", page.name);
  text("email", page.email);
  const list = document.getElementById("orders");
  for (const order of page.orders ?? []) {
    const li = document.createElement("li");
    li.className = "order";
    li.textContent = `${order.id}: ${order.status}`;
    list?.append(li);
  }
  const missing = (page._errors ?? []).map((e) => e.backend).join(", ");
  text("status", partial ? `some parts are missing: ${missing}` : "up to date");
}

const result = await api.getApiAccountById({ id: params.get("user") ?? "42" });
if (result.ok) {
  render(result.data, result.partial);
} else if (result.status === "unexpected") {
  text("status", `cannot load the account: ${result.error.message}`);
} else {
  // A status the document lists for this route, with the BFF's JSON error.
  text("status", `cannot load the account: ${result.status} ${result.error.code}`);
}
