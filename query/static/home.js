// runstream web app: home — entities and their projects, with run counts and last activity.
"use strict";

(async () => {
  const { h } = rs;
  const main = rs.frame([]);
  document.title = "Projects · runstream";
  main.append(h("h1", {}, "Projects"));
  let data;
  try {
    data = await rs.api("GET", "/api/projects?fresh=true");
  } catch (e) {
    rs.showError(`Could not list projects: ${e.message}`);
    return;
  }
  if (!data.projects.length) {
    main.append(h("p", { class: "empty" }, "No runs yet. Log one with runstream.init(project=...) and it shows up here."));
    return;
  }
  const byEntity = new Map();
  for (const p of data.projects) {
    if (!byEntity.has(p.entity)) byEntity.set(p.entity, []);
    byEntity.get(p.entity).push(p);
  }
  for (const [entity, projects] of byEntity) {
    const rows = projects.map((p) => h("tr", { "data-project": p.project },
      h("td", {}, h("a", { href: rs.projectHref(p.entity, p.project) }, p.project)),
      h("td", { class: "num" }, String(p.runs)),
      h("td", { class: "num" }, p.running ? h("span", { class: "badge state-running" }, `${p.running} running`) : ""),
      h("td", {}, rs.fmtTime(p.last_activity || p.last_created_at))));
    main.append(h("section", { class: "entity", "data-entity": entity },
      h("h2", {}, entity),
      h("table", { class: "grid" },
        h("thead", {}, h("tr", {}, h("th", {}, "project"), h("th", {}, "runs"), h("th", {}, "running"),
                          h("th", {}, "last activity"))),
        h("tbody", {}, rows))));
  }
})();
