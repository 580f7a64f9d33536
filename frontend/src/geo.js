// Geometry for the map: fences as drawable shapes, distances.

const EARTH_M = 6371008.8;
const rad = (deg) => (deg * Math.PI) / 180;

/** Metres between two [lon, lat] points (haversine). */
export function distanceM([lon1, lat1], [lon2, lat2]) {
  const a = Math.sin(rad(lat2 - lat1) / 2) ** 2
    + Math.cos(rad(lat1)) * Math.cos(rad(lat2)) * Math.sin(rad(lon2 - lon1) / 2) ** 2;
  return 2 * EARTH_M * Math.asin(Math.sqrt(a));
}

/** A circle of `radiusM` around [lon, lat] as a polygon ring. */
function circle([lon, lat], radiusM, steps = 48) {
  const ring = [];
  const dLat = radiusM / EARTH_M;
  const dLon = dLat / Math.cos(rad(lat));
  for (let i = 0; i <= steps; i += 1) {
    const t = (2 * Math.PI * i) / steps;
    ring.push([lon + (dLon * Math.cos(t) * 180) / Math.PI, lat + (dLat * Math.sin(t) * 180) / Math.PI]);
  }
  return ring;
}

/** The contract's fences (circles as Points with radius_m, polygons, corridors) as GeoJSON the
 * map can draw: circles become polygons, and keep their centre as a point. */
export function drawableFences(collection) {
  const features = [];
  for (const fence of collection.features || []) {
    const props = fence.properties || {};
    const geometry = fence.geometry || {};
    const properties = { kind: props.kind || "other", name: props.name || props.fence_id };
    if (geometry.type === "Point" && props.radius_m) {
      features.push({ type: "Feature", properties, geometry: { type: "Polygon", coordinates: [circle(geometry.coordinates, props.radius_m)] } });
      features.push({ type: "Feature", properties, geometry }); // its site, seen when zoomed out
    } else if (["Polygon", "MultiPolygon", "LineString"].includes(geometry.type)) {
      features.push({ type: "Feature", properties, geometry });
    }
  }
  return { type: "FeatureCollection", features };
}
