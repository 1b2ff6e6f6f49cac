// A trip's positions on a small map (its own line; tiles only when the deployment has some).
"use strict";
(function () {
  const el = document.getElementById("trip-map");
  if (!el || typeof window.L === "undefined") return;
  const points = JSON.parse(el.dataset.positions || "[]");
  if (!points.length) return;
  const map = L.map(el);
  if (el.dataset.tileUrl) L.tileLayer(el.dataset.tileUrl).addTo(map);
  const line = L.polyline(points, {color: "#1f5fbf", weight: 4}).addTo(map);
  L.circleMarker(points[0], {radius: 7, color: "#1b7f3b", fillOpacity: 1}).addTo(map);
  L.circleMarker(points[points.length - 1], {radius: 7, color: "#c0161d", fillOpacity: 1}).addTo(map);
  map.fitBounds(line.getBounds(), {padding: [20, 20], maxZoom: 17});
})();
