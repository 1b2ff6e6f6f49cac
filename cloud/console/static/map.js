// The live map: the network's own geometry as the base layer (no tiles unless configured),
// each station its own marker coloured by its most urgent state (a cluster's stations spread
// around its position), free-floating vehicles by state and battery; updates from the
// console's server-sent events (one outbox reader per server, shared by every browser), from
// the outbox position the page was rendered at: nothing committed in between is missed.
"use strict";
(function () {
  const el = document.getElementById("map");
  if (!el) return;
  const texts = JSON.parse(el.dataset.texts || "{}");
  const stationTable = document.querySelector("#station-table tbody");
  const vehicleTable = document.querySelector("#vehicle-table tbody");
  const hasLeaflet = typeof window.L !== "undefined";
  let map = null, baseLayer = null, stationLayer = null, vehicleLayer = null;
  const vehicleMarkers = new Map();
  const stationMarkers = new Map();
  let stations = new Map();
  // A cluster's stations share its position: each is drawn this many pixels from it (the
  // same at every zoom), spread around a circle.
  const SPREAD_PX = 14, MARKER_PX = 20;
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
    stationLayer = L.layerGroup().addTo(map);
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

  // The table row of one station or vehicle (made the first time): live updates replace its
  // cells, the row stays in its place.
  function rowOf(table, key, id) {
    let tr = table.querySelector(`tr[data-${key}-id="${id}"]`);
    if (!tr) {
      tr = document.createElement("tr");
      tr.setAttribute(`data-${key}-id`, id);
      table.append(tr);
    }
    return tr;
  }

  function stationRow(st) {
    const tr = rowOf(stationTable, "station", st.station_id);
    tr.dataset.state = st.states[0];
    const name = document.createElement("td");
    const link = document.createElement("a");
    link.href = `${el.dataset.stationUrl}${st.station_id}`;
    link.textContent = st.name;
    name.append(link);
    tr.replaceChildren(name, cell(st.cluster_name), cell(stateText(st.states)),
      cell(String(st.spots_free)), cell(`${st.vehicles_available}/${st.spots}`));
  }

  function stationIcon(st) {
    const state = st.states[0];
    let dx = 0, dy = 0;
    if (st.of > 1) {
      // A circle wide enough for its markers side by side, however many the cluster has.
      const radius = Math.max(SPREAD_PX, (st.of * (MARKER_PX + 2)) / (2 * Math.PI));
      const angle = (2 * Math.PI * st.slot) / st.of - Math.PI / 2;
      dx = Math.round(radius * Math.cos(angle));
      dy = Math.round(radius * Math.sin(angle));
    }
    const half = MARKER_PX / 2;
    return L.divIcon({
      className: `station-marker st-${state}`,
      html: `<span style="background:${COLOURS[state] || "#333"}"></span>`,
      iconSize: [MARKER_PX, MARKER_PX], iconAnchor: [half - dx, half - dy],
    });
  }

  function drawStation(st) {
    const known = stations.get(st.station_id);
    // A single station's update does not know its slot in the cluster: keep the page's.
    if (known) { st = {...st, slot: known.slot, of: known.of}; }
    stations.set(st.station_id, st);
    stationRow(st);
    if (!stationLayer) return;
    const label = `${texts.station} ${st.name} (${st.cluster_name}): ${stateText(st.states)}` +
      ` · ${texts.spots_free} ${st.spots_free} · ${texts.vehicles} ${st.vehicles_available}`;
    let marker = stationMarkers.get(st.station_id);
    if (!marker) {
      marker = L.marker([st.latitude, st.longitude], {icon: stationIcon(st), title: label,
        alt: label, keyboard: true});
      marker.on("click", () => { window.location = `${el.dataset.stationUrl}${st.station_id}`; });
      stationLayer.addLayer(marker);
      stationMarkers.set(st.station_id, marker);
    } else {
      marker.setLatLng([st.latitude, st.longitude]);
      marker.setIcon(stationIcon(st));
    }
    marker.unbindTooltip().bindTooltip(label);
    const node = marker.getElement();
    if (node) {
      node.dataset.stationId = st.station_id;
      node.dataset.state = st.states[0];
      node.setAttribute("aria-label", label);
      node.title = label;
    }
  }

  function drawStations(list) {
    stationTable.replaceChildren();
    if (stationLayer) { stationLayer.clearLayers(); stationMarkers.clear(); }
    stations = new Map();
    for (const st of list) drawStation(st);
  }

  function vehicleRow(v) {
    const tr = rowOf(vehicleTable, "vehicle", v.vehicle_id);
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
  function removeVehicle(id) {
    vehicles.delete(id);
    const marker = vehicleMarkers.get(id);
    if (marker) { marker.remove(); vehicleMarkers.delete(id); }
    const tr = vehicleTable.querySelector(`tr[data-vehicle-id="${id}"]`);
    if (tr) tr.remove();
  }

  function draw(data) {
    drawZones(data.zones);
    drawStations(data.stations);
    vehicleTable.replaceChildren();
    if (vehicleLayer) { vehicleLayer.clearLayers(); vehicleMarkers.clear(); }
    vehicles = new Map(data.vehicles.map((v) => [v.vehicle_id, v]));
    for (const v of vehicles.values()) drawVehicle(v);
    el.dataset.loaded = String(Date.now());
    document.body.dataset.mapReady = "1";
  }

  async function load() {
    const r = await fetch(el.dataset.mapUrl, {credentials: "same-origin"});
    if (r.status === 401 || r.redirected) { window.location.reload(); return; }
    draw(await r.json());
  }

  // One station's marker and row, read again (an event about it), at most every 250 ms.
  const stationPending = new Map();
  function refreshStation(id) {
    if (stationPending.has(id)) return;
    stationPending.set(id, setTimeout(async () => {
      stationPending.delete(id);
      const r = await fetch(`${el.dataset.stationUrl}${id}/map.json`, {credentials: "same-origin"});
      if (r.status === 401 || r.redirected) { window.location.reload(); return; }
      if (r.ok) drawStation(await r.json());
    }, 250));
  }

  // Anything else (a vehicle docking, an alert on no station): the whole map again, at most
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
      // A station's own change (dock, online, alert): that station's marker.
      if (p.station_id !== undefined && p.station_id !== null && stations.has(p.station_id)) {
        refreshStation(p.station_id);
        if (!e.topic.startsWith("vehicule.")) return;
      }
      if (e.topic.startsWith("device.") || e.topic.startsWith("trip.")) return;
      if (e.topic.startsWith("vehicule.") && p.vehicle_id !== undefined) {
        const known = vehicles.get(p.vehicle_id);
        if (p.spot_id !== null && p.spot_id !== undefined) {
          // Docked: no longer free-floating (its station's marker follows its dock event).
          if (known) removeVehicle(p.vehicle_id);
          return;
        }
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

  // The page carries its data, read after the outbox position its stream starts from.
  draw(JSON.parse(document.getElementById("map-data").textContent));
  listen();
})();
