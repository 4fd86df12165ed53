/**
 * Renders a migration report as an SVG chart: per iteration, the MiB sent
 * (RAM, with the device pre-copy bytes stacked on it where devices pre-copy)
 * and the MiB left dirty (bars), and the expected downtime against the limit
 * (line, right axis).
 *
 * @module
 */

import type { MigrationReport } from "./report.ts";

function esc(s: string): string {
  return s.replace(
    /[&<>"]/g,
    (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" })[c]!,
  );
}

function largest(...lists: number[][]): number {
  let m = -Infinity;
  for (const list of lists) for (const v of list) if (v > m) m = v;
  return m;
}

function niceMax(v: number): number {
  if (v <= 0) return 1;
  const p = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 2, 2.5, 5, 10]) if (v <= m * p) return m * p;
  return 10 * p;
}

/**
 * Renders the chart.
 *
 * @param report The report.
 * @returns The SVG document.
 *
 * @example
 * ```ts ignore
 * Deno.writeTextFileSync("migration.svg", renderReportSvg(report));
 * ```
 */
export function renderReportSvg(report: MigrationReport): string {
  const W = 760, H = 420, L = 64, R = 72, T = 56, B = 64;
  const pw = W - L - R, ph = H - T - B;
  const rows = report.iterations;
  const MiB = 2 ** 20;
  const sent = rows.map((r) => r.bytes / MiB);
  const device = rows.map((r) => (r.deviceBytes ?? 0) / MiB);
  const precopy = rows.some((r) => r.deviceBytes !== undefined);
  const dirty = rows.map((r) => (r.dirtyPages * report.pageSize) / MiB);
  const down = rows.map((
    r,
  ) => (Number.isFinite(r.expectedDowntimeMs) ? r.expectedDowntimeMs : NaN));
  // Loops, not Math.max(...rows): a report may have more rows than the call stack has room for.
  const yMax = niceMax(largest([1], sent, dirty));
  const limit = report.policy.downtimeLimitMs;
  const dMax = niceMax(largest([limit * 1.2], down.filter((d) => !Number.isNaN(d))));
  const n = Math.max(rows.length, 1);
  const slot = pw / n;
  const bw = Math.max(2, Math.min(28, slot / 2.6));
  const y = (v: number) => T + ph - (v / yMax) * ph;
  const yd = (v: number) => T + ph - (Math.min(v, dMax) / dMax) * ph;
  const out: string[] = [];
  out.push(
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="12">`,
    `<rect width="${W}" height="${H}" fill="#fff"/>`,
  );
  const title =
    `Pre-copy: ${
      (report.ramBytes / MiB).toFixed(0)
    } MiB over ${report.transport} — ${report.result}` +
    (report.downtimeMs !== null ? `, downtime ${report.downtimeMs.toFixed(0)} ms` : "");
  out.push(`<text x="${L}" y="22" font-size="15" font-weight="bold">${esc(title)}</text>`);
  const scope = Object.entries(report.dirtyScope).map(([k, v]) => `${k}: ${v}`).join(", ");
  out.push(
    `<text x="${L}" y="40" fill="#555">${esc(`policy ${report.policy.applied}; ${scope}`)}</text>`,
  );
  for (let i = 0; i <= 4; i++) {
    const v = (yMax * i) / 4;
    out.push(
      `<line x1="${L}" x2="${L + pw}" y1="${y(v)}" y2="${y(v)}" stroke="#e5e5e5"/>`,
      `<text x="${L - 6}" y="${y(v) + 4}" text-anchor="end">${+v.toFixed(1)}</text>`,
      `<text x="${L + pw + 6}" y="${yd((dMax * i) / 4) + 4}" fill="#b3261e">${+((dMax * i) / 4)
        .toFixed(0)}</text>`,
    );
  }
  rows.forEach((r, i) => {
    const cx = L + slot * i + slot / 2;
    const ram = sent[i] - device[i];
    out.push(
      `<rect x="${cx - bw}" y="${y(ram)}" width="${bw}" height="${
        T + ph - y(ram)
      }" fill="#3b73b9"><title>iteration ${r.iteration}: sent ${sent[i].toFixed(1)} MiB in ${
        r.durationMs.toFixed(0)
      } ms (${r.bandwidthMBps.toFixed(0)} MB/s)${
        precopy ? `, of it RAM ${ram.toFixed(1)} MiB` : ""
      }</title></rect>`,
    );
    if (device[i] > 0) {
      out.push(
        `<rect class="device" x="${cx - bw}" y="${y(sent[i])}" width="${bw}" height="${
          y(ram) - y(sent[i])
        }" fill="#2e8b57"><title>iteration ${r.iteration}: device pre-copy ${
          device[i].toFixed(1)
        } MiB${
          Object.entries(r.precopyBytesByDevice ?? {}).map(([id, b]) =>
            `; ${id} ${(b / MiB).toFixed(1)} MiB`
          ).join("")
        }</title></rect>`,
      );
    }
    out.push(
      `<rect x="${cx}" y="${y(dirty[i])}" width="${bw}" height="${
        T + ph - y(dirty[i])
      }" fill="#f0a43a"><title>iteration ${r.iteration}: ${
        dirty[i].toFixed(1)
      } MiB left dirty</title></rect>`,
    );
    if (r.throttle > 0 && (n <= 24 || i % Math.ceil(n / 24) === 0)) {
      out.push(
        `<text x="${cx}" y="${
          y(Math.max(sent[i], dirty[i])) - 4
        }" text-anchor="middle" font-size="10" fill="#555">${r.throttle}%</text>`,
      );
    }
    if (n <= 40 || i % Math.ceil(n / 40) === 0) {
      out.push(`<text x="${cx}" y="${T + ph + 16}" text-anchor="middle">${r.iteration}</text>`);
    }
  });
  const pts = rows.map((_, i) => [L + slot * i + slot / 2, down[i]] as const)
    .filter(([, d]) => !Number.isNaN(d)).map(([x, d]) => `${x},${yd(d)}`);
  if (pts.length > 0) {
    out.push(`<polyline points="${pts.join(" ")}" fill="none" stroke="#b3261e" stroke-width="2"/>`);
    for (const p of pts) {
      const [x, yy] = p.split(",");
      out.push(`<circle cx="${x}" cy="${yy}" r="3" fill="#b3261e"/>`);
    }
  }
  out.push(
    `<line x1="${L}" x2="${L + pw}" y1="${yd(limit)}" y2="${
      yd(limit)
    }" stroke="#b3261e" stroke-dasharray="5 4"/>`,
    `<text x="${L + pw - 4}" y="${
      yd(limit) - 5
    }" text-anchor="end" fill="#b3261e">downtime limit ${limit} ms</text>`,
    `<line x1="${L}" x2="${L}" y1="${T}" y2="${T + ph}" stroke="#333"/>`,
    `<line x1="${L}" x2="${L + pw}" y1="${T + ph}" y2="${T + ph}" stroke="#333"/>`,
    `<text x="${L + pw / 2}" y="${H - 24}" text-anchor="middle">iteration</text>`,
    `<text transform="translate(18 ${T + ph / 2}) rotate(-90)" text-anchor="middle">MiB</text>`,
    `<text transform="translate(${W - 14} ${
      T + ph / 2
    }) rotate(90)" text-anchor="middle" fill="#b3261e">expected downtime (ms)</text>`,
    `<rect x="${L}" y="${H - 16}" width="10" height="10" fill="#3b73b9"/><text x="${L + 14}" y="${
      H - 7
    }">${precopy ? "RAM" : "sent"}</text>`,
    `<rect x="${L + 60}" y="${H - 16}" width="10" height="10" fill="#f0a43a"/><text x="${
      L + 74
    }" y="${H - 7}">left dirty</text>`,
    `<line x1="${L + 150}" x2="${L + 170}" y1="${H - 11}" y2="${
      H - 11
    }" stroke="#b3261e" stroke-width="2"/><text x="${L + 174}" y="${
      H - 7
    }">expected downtime</text>`,
    `<text x="${L + 300}" y="${H - 7}" fill="#555">N% over a bar: workload throttle</text>`,
    ...(precopy
      ? [
        `<rect x="${L + 510}" y="${H - 16}" width="10" height="10" fill="#2e8b57"/><text x="${
          L + 524
        }" y="${H - 7}">device pre-copy (on RAM)</text>`,
      ]
      : []),
    `</svg>`,
  );
  return out.join("\n");
}
