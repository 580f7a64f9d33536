// Builds the pages into chainsight/api/static/ (served by the API): `npm run build`.
// Bundles the scripts with esbuild, copies the pages and MapLibre's worker, and turns the
// Natural Earth TopoJSON of world-atlas into the GeoJSON basemap (land, borders), so the pages
// need nothing from outside the server.
import { build } from "esbuild";
import { copyFileSync, mkdirSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { feature, mesh } from "topojson-client";

const here = dirname(fileURLToPath(import.meta.url));
const out = join(here, "..", "chainsight", "api", "static");
const modules = join(here, "node_modules");

rmSync(out, { recursive: true, force: true });
mkdirSync(out, { recursive: true });

await build({
  entryPoints: ["signin", "map", "console", "live-worker"].map((name) => join(here, "src", `${name}.js`)),
  outdir: out,
  bundle: true,
  minify: true,
  format: "esm",
  target: "es2022",
  legalComments: "linked",
  logLevel: "warning",
});

for (const name of readdirSync(join(here, "src")).filter((n) => n.endsWith(".html"))) {
  copyFileSync(join(here, "src", name), join(out, name));
}
copyFileSync(join(modules, "maplibre-gl", "dist", "maplibre-gl-worker.mjs"), join(out, "maplibre-gl-worker.mjs"));

// Basemap: Natural Earth 1:50m land and country borders (world-atlas), as GeoJSON.
const round = (key, value) => (typeof value === "number" ? Math.round(value * 1e3) / 1e3 : value);
const land = JSON.parse(readFileSync(join(modules, "world-atlas", "land-50m.json"), "utf8"));
const countries = JSON.parse(readFileSync(join(modules, "world-atlas", "countries-50m.json"), "utf8"));
writeFileSync(join(out, "land.geojson"), JSON.stringify(feature(land, land.objects.land), round));
writeFileSync(join(out, "borders.geojson"),
  JSON.stringify(mesh(countries, countries.objects.countries, (a, b) => a !== b), round));
