// Swagger UI (served from this server) on /api/openapi.json; every request it
// sends, the description's own fetch included, carries the console's token.
import { start, token } from "./api.js";

function main() {
  const root = document.getElementById("swagger-ui");
  if (typeof window.SwaggerUIBundle !== "function") {
    const problem = document.getElementById("docs-error");
    problem.hidden = false;
    problem.textContent = "Swagger UI did not load.";
    return;
  }
  window.ui = window.SwaggerUIBundle({
    url: root.dataset.specUrl,
    domNode: root,
    layout: "BaseLayout",
    deepLinking: true,
    presets: [window.SwaggerUIBundle.presets.apis],
    requestInterceptor: (request) => {
      const bearer = token();
      if (bearer) request.headers.Authorization = `Bearer ${bearer}`;
      return request;
    },
  });
}

start(main);
