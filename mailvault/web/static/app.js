// mailvault serve: the only script of the UI (no inline scripts; the CSP forbids them).
"use strict";
document.addEventListener("DOMContentLoaded", () => {
  for (const box of document.querySelectorAll("input.select-all")) {
    box.addEventListener("change", () => {
      const table = box.closest("table");
      for (const item of table.querySelectorAll('input[name="item"]')) item.checked = box.checked;
    });
  }
  const job = document.getElementById("job");
  if (job) {
    const id = job.dataset.job;
    const poll = async () => {
      const r = await fetch(`/job/${id}.json`, { credentials: "same-origin" });
      if (!r.ok) return;
      const s = await r.json();
      const bar = document.getElementById("job-progress");
      bar.max = s.total || Math.max(1, s.done);
      bar.value = s.done;
      document.getElementById("job-status").textContent = s.status;
      document.getElementById("job-desc").textContent = s.desc;
      document.getElementById("job-count").textContent = s.total ? `${Math.round(s.done)} / ${Math.round(s.total)}` : `${Math.round(s.done)}`;
      document.getElementById("job-message").textContent = s.message;
      if (s.status === "running") setTimeout(poll, 300);
    };
    poll();
  }
});
