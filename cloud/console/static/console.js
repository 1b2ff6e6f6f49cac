// Console behaviour shared by the pages: a station page follows its spots live (the
// console's server-sent events; htmx reloads the spots table), "select all" in the alerts
// inbox. Every action also works without scripts (confirmation page, plain forms).
"use strict";
(function () {
  const spots = document.getElementById("spots");
  if (spots && spots.dataset.eventsUrl && window.EventSource) {
    const stationId = Number(spots.dataset.stationId);
    // The station's mainboard reports (device.event) carry its device id, not the station's.
    const deviceId = spots.dataset.deviceId || null;
    const log = document.getElementById("event-log");
    const source = new EventSource(spots.dataset.eventsUrl);
    let pending = null;
    source.addEventListener("reload", () => {
      document.body.dispatchEvent(new Event("live-update"));
    });
    source.addEventListener("kickstand", (msg) => {
      const e = JSON.parse(msg.data);
      const p = e.payload || {};
      const ours = p.station_id === stationId;
      if (!ours && !(deviceId && p.device_id === deviceId)) return;
      if (log) {
        if (log.querySelector(".muted")) log.replaceChildren();
        const li = document.createElement("li");
        li.className = "live";  // beside the history the page was rendered with
        li.textContent = `${new Date().toLocaleTimeString()} · ${e.topic}` +
          (p.event ? ` · ${p.event}` : "") +
          (p.displayed_number ? ` · #${p.displayed_number}` : "") + (p.state ? ` → ${p.state}` : "") +
          (p.serial_number ? ` (${p.serial_number})` : "");
        log.prepend(li);
        while (log.children.length > 50) log.lastChild.remove();
      }
      // A mainboard's own report changes no spot: logged, no reload.
      if (!ours) return;
      // Several events of one change arrive together: one reload.
      if (pending) return;
      pending = setTimeout(() => {
        pending = null;
        document.body.dispatchEvent(new Event("live-update"));
      }, 250);
    });
    source.onopen = () => { document.body.dataset.live = "open"; };
  }

  document.querySelectorAll("input[data-select-all]").forEach((box) => {
    box.addEventListener("change", () => {
      const form = box.closest("form");
      form.querySelectorAll(`input[name="${box.dataset.selectAll}"]`).forEach((c) => {
        c.checked = box.checked;
      });
    });
  });
})();
