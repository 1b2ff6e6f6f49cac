// The live map: the network's own geometry as the base layer (no tiles unless configured),
// clusters coloured by state, free-floating vehicles by state and battery; updates from the
// console's server-sent events (one outbox reader per server, shared by every browser).
"use strict";
(function () {
  const el = document.getElementById("map");
  if (!el) return;
  const texts = JSON.parse(el.dataset.texts || "{}");
  const clusterTable = document.querySelector("#cluster-table tbody");
  const vehicleTable = document.querySelector("#vehicle-table tbody");
  const hasLeaflet = typeof window.L !== "undefined";
  let map = null, baseLayer = null, clusterLayer = null, vehicleLayer = null;
  const vehicleMarkers = new Map();
  const COLOURS = {ok: "#1b7f3b", offline: "#6b6b6b", alert: "#c0161d", maintenance: "#6a3d9a",
    empty: "#d9730d", full: "#1f5fbf"};

  function batteryColour(level) {
    if (level === null || level === undefined) return "#6b6b6b";
    return level > 50 ? "#1b7f3b" : level > 20 ? "#d9730d" : "#c0161d";
  }
  function cell(text) { const td = document.createElement("td"); td.textContent = text; return td; }
  function stateText(states) { return states.map((s) => texts[s] || s).join(", "); }

  if (hasLeaflet) {
    map = L.map(el, {preferCanvas: false, keyboard: true});
    const [lat, lng] = (el.dataset.center || ",").split(",").map(parseFloat);
    map.setView([isNaN(lat) ? 0 : lat, isNaN(lng) ? 0 : lng], 13);
    if (el.dataset.tileUrl) {
      L.tileLayer(el.dataset.tileUrl, {attribution: el.dataset.tileAttribution || ""}).addTo(map);
    }
    clusterLayer = L.layerGroup().addTo(map);
    vehicleLayer = L.layerGroup().addTo(map);
  }

  function drawZones(zones) {
    if (!map) return;
    if (baseLayer) baseLayer.remove();
    baseLayer = L.geoJSON(zones, {style: (f) => {
      const kind = (f.properties || {}).zone_type;
      if (kind === "border") return {color: "#333", weight: 2, fill: false};
      if (kind === "forbidden") return {color: "#c0161d", weight: 1, fillOpacity: 0.15};
      if (kind === "speed") return {color: "#d9730d", weight: 1, fillOpacity: 0.1};
      return {color: "#1f5fbf", weight: 1, fillOpacity: 0.1};
    }}).addTo(map);
    baseLayer.bringToBack();
    const bounds = baseLayer.getBounds();
    if (bounds.isValid() && !drawZones.fitted) { map.fitBounds(bounds); drawZones.fitted = true; }
  }

  function drawClusters(clusters) {
    clusterTable.replaceChildren();
    if (clusterLayer) clusterLayer.clearLayers();
    for (const c of clusters) {
      const state = c.states[0];
      const tr = document.createElement("tr");
      tr.dataset.clusterId = c.cluster_id;
      tr.dataset.state = state;
      const name = document.createElement("td");
      const link = document.createElement("a");
      link.href = `${el.dataset.clusterUrl}${c.cluster_id}`;
      link.textContent = c.name;
      name.append(link);
      tr.append(name, cell(stateText(c.states)), cell(`${c.stations_online}/${c.stations}`),
        cell(String(c.spots_free)), cell(String(c.vehicles)));
      clusterTable.append(tr);
      if (clusterLayer) {
        const marker = L.circleMarker([c.latitude, c.longitude], {radius: 11, color: "#fff",
          weight: 2, fillColor: COLOURS[state] || "#333", fillOpacity: 0.95,
          className: `cluster-marker st-${state}`});
        marker.bindTooltip(`${c.name}: ${stateText(c.states)} · ${texts.spots_free} ${c.spots_free}` +
          ` · ${texts.vehicles} ${c.vehicles}`);
        marker.on("click", () => openCluster(c));
        clusterLayer.addLayer(marker);
      }
    }
  }

  function openCluster(c) { window.location = `${el.dataset.clusterUrl}${c.cluster_id}`; }

  function vehicleRow(v) {
    let tr = vehicleTable.querySelector(`tr[data-vehicle-id="${v.vehicle_id}"]`);
    if (!tr) {
      tr = document.createElement("tr");
      tr.dataset.vehicleId = v.vehicle_id;
      vehicleTable.append(tr);
    }
    const link = document.createElement("a");
    link.href = `${el.dataset.vehicleUrl}${v.vehicle_id}`;
    link.textContent = v.serial_number;
    const name = document.createElement("td");
    name.append(link);
    tr.replaceChildren(name, cell(v.state + (v.online === false ? ` (${texts.offline})` : "")),
      cell(v.battery_level === null || v.battery_level === undefined ? "–" : `${v.battery_level} %`));
  }

  function drawVehicle(v) {
    vehicleRow(v);
    if (!vehicleLayer || v.latitude === null || v.latitude === undefined) return;
    let marker = vehicleMarkers.get(v.vehicle_id);
    const style = {radius: 6, color: v.alert ? COLOURS.alert : (v.state === "available" ? "#222" : "#6a3d9a"),
      weight: 2, fillColor: batteryColour(v.battery_level), fillOpacity: 0.9,
      className: `vehicle-marker vs-${v.state}`};
    if (!marker) {
      marker = L.circleMarker([v.latitude, v.longitude], style);
      marker.on("click", () => { window.location = `${el.dataset.vehicleUrl}${v.vehicle_id}`; });
      vehicleLayer.addLayer(marker);
      vehicleMarkers.set(v.vehicle_id, marker);
    } else {
      marker.setLatLng([v.latitude, v.longitude]);
      marker.setStyle(style);
    }
    marker.bindTooltip(`${v.serial_number}: ${v.state} · ${texts.battery} ${v.battery_level ?? "–"} %`);
  }

  let vehicles = new Map();
  async function load() {
    const r = await fetch(el.dataset.mapUrl, {credentials: "same-origin"});
    if (r.status === 401 || r.redirected) { window.location.reload(); return; }
    const data = await r.json();
    drawZones(data.zones);
    drawClusters(data.clusters);
    vehicleTable.replaceChildren();
    if (vehicleLayer) { vehicleLayer.clearLayers(); vehicleMarkers.clear(); }
    vehicles = new Map(data.vehicles.map((v) => [v.vehicle_id, v]));
    for (const v of vehicles.values()) drawVehicle(v);
    el.dataset.loaded = String(Date.now());
    document.body.dataset.mapReady = "1";
  }

  // Clusters' figures are aggregates: a dock, station or alert event reloads them, at most
  // once a second however many events arrive.
  let pending = null;
  function reloadSoon() {
    if (pending) return;
    pending = setTimeout(() => { pending = null; load(); }, 1000);
  }

  const log = document.getElementById("event-log");
  function logEvent(e) {
    if (log.querySelector(".muted")) log.replaceChildren();
    const li = document.createElement("li");
    const p = e.payload || {};
    const what = p.serial_number || p.device_id || p.station_device_id || e.resource_id;
    li.textContent = `${new Date().toLocaleTimeString()} · ${e.topic} · ${what}` +
      (p.state ? ` → ${p.state}` : "");
    log.prepend(li);
    while (log.children.length > 30) log.lastChild.remove();
  }

  const liveState = document.getElementById("live-state");
  function listen() {
    const source = new EventSource(el.dataset.eventsUrl);
    source.onopen = () => { liveState.textContent = texts.live_connected; };
    source.onerror = () => { liveState.textContent = texts.live_lost; };
    // The feed could not replay what this page missed (a long disconnection): read it all.
    source.addEventListener("reload", () => reloadSoon());
    source.addEventListener("kickstand", (msg) => {
      const e = JSON.parse(msg.data);
      logEvent(e);
      const p = e.payload || {};
      if (e.topic.startsWith("vehicule.") && p.vehicle_id !== undefined) {
        const known = vehicles.get(p.vehicle_id);
        if (p.spot_id !== null && p.spot_id !== undefined) { reloadSoon(); return; }
        if (known || p.latitude !== null) {
          const v = {...(known || {}), ...p};
          vehicles.set(p.vehicle_id, v);
          drawVehicle(v);
          return;
        }
      }
      reloadSoon();
    });
  }

  load().then(listen);
})();
