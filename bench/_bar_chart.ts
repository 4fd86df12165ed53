// The SVG bar charts of bench:qemu: one group of bars per case, one bar per
// engine, a dashed reference line (the C TCP pump) when given, a footnote;
// several charts stacked into one SVG.

function esc(s: string): string {
  return s.replace(
    /[&<>"]/g,
    (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" })[c]!,
  );
}

/** Grouped bars (one group per case, one bar per engine) and a dashed reference line. */
export function renderBarChart(o: {
  title: string;
  subtitle: string;
  groups: { label: string; values: (number | undefined)[] }[];
  series: string[];
  /** The dashed line (GB/s); none when undefined. */
  reference?: number;
  /** Its label (default: the C loopback TCP pump). */
  referenceLabel?: string;
  footnote: string;
}): string {
  const W = 1100, H = 480, L = 60, R = 20, T = 92, B = 70;
  const pw = W - L - R, ph = H - T - B;
  const all = o.groups.flatMap((g) => g.values.filter((v) => v !== undefined)) as number[];
  // Bars past 2.5x the reference (all-zero RAM barely touches the wire) are
  // clipped at the top and keep their value label.
  const ref = o.reference;
  const top =
    (ref === undefined ? Math.max(0.1, ...all) : Math.min(Math.max(ref, ...all), 2.5 * ref)) * 1.15;
  const step = top > 4 ? 1 : top > 1 ? 0.5 : 0.1;
  const yMax = Math.ceil(top / step) * step;
  const y = (v: number) => T + ph - (v / yMax) * ph;
  const colors = ["#2b6cb0", "#dd6b20", "#c53030", "#2f855a", "#6b46c1", "#718096"];
  const slot = pw / o.groups.length, bw = Math.min(60, slot / (o.series.length + 1.2));
  const s: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="12">`,
    `<rect width="${W}" height="${H}" fill="#fff"/>`,
    `<text x="${W / 2}" y="24" text-anchor="middle" font-size="17" font-weight="bold">${
      esc(o.title)
    }</text>`,
    `<text x="${W / 2}" y="44" text-anchor="middle" fill="#444">${esc(o.subtitle)}</text>`,
  ];
  for (let v = 0; v <= yMax + 1e-9; v += step) {
    s.push(
      `<line x1="${L}" x2="${W - R}" y1="${y(v)}" y2="${y(v)}" stroke="#e2e2e2"/>`,
      `<text x="${L - 6}" y="${y(v) + 4}" text-anchor="end">${v.toFixed(1)}</text>`,
    );
  }
  s.push(
    `<text transform="translate(16 ${T + ph / 2}) rotate(-90)" text-anchor="middle">GB/s</text>`,
    `<line x1="${L}" x2="${L}" y1="${T}" y2="${T + ph}" stroke="#000"/>`,
    `<line x1="${L}" x2="${W - R}" y1="${T + ph}" y2="${T + ph}" stroke="#000"/>`,
  );
  o.groups.forEach((g, gi) => {
    const x0 = L + gi * slot + (slot - bw * o.series.length) / 2;
    g.values.forEach((v, si) => {
      const x = x0 + si * bw;
      if (v === undefined) {
        s.push(
          `<text x="${x + bw / 2}" y="${
            T + ph - 6
          }" text-anchor="middle" fill="#888" font-size="11">n/a</text>`,
        );
        return;
      }
      const h = Math.min(v, yMax);
      s.push(
        `<rect x="${x + 2}" y="${y(h)}" width="${bw - 4}" height="${T + ph - y(h)}" fill="${
          colors[si]
        }"/>`,
        `<text x="${x + bw / 2}" y="${
          y(h) + (v > yMax ? 14 : -4)
        }" text-anchor="middle" font-size="11"${
          v > yMax ? ' fill="#fff" font-weight="bold"' : ""
        }>${v > yMax ? "▲" : ""}${v.toFixed(2)}</text>`,
      );
    });
    const [a, b] = g.label.split(", ");
    s.push(
      `<text x="${L + gi * slot + slot / 2}" y="${T + ph + 18}" text-anchor="middle">${
        esc(a)
      }</text>`,
      `<text x="${L + gi * slot + slot / 2}" y="${T + ph + 34}" text-anchor="middle" fill="#444">${
        esc(b ?? "")
      }</text>`,
    );
  });
  if (ref !== undefined) {
    s.push(
      `<line x1="${L}" x2="${W - R}" y1="${y(ref)}" y2="${
        y(ref)
      }" stroke="#222" stroke-dasharray="6 4"/>`,
      `<text x="${W - R - 4}" y="${y(ref) - 5}" text-anchor="end">${
        esc(o.referenceLabel ?? "C loopback TCP")
      } ${ref.toFixed(2)} GB/s</text>`,
    );
  }
  const legend = [...o.series];
  let lx = L + 10;
  legend.forEach((name, i) => {
    s.push(
      `<rect x="${lx}" y="60" width="14" height="14" fill="${colors[i]}"/>`,
      `<text x="${lx + 20}" y="72">${esc(name)}</text>`,
    );
    lx += 40 + name.length * 7;
  });
  s.push(
    `<text x="${W / 2}" y="${H - 10}" text-anchor="middle" fill="#666" font-size="11">${
      esc(o.footnote)
    }</text>`,
    "</svg>",
  );
  return s.join("\n") + "\n";
}

/** Stacks SVGs of {@link renderBarChart} (1100 x 480 each) into one, top to bottom. */
export function stackSvgs(svgs: string[]): string {
  const W = 1100, H = 480;
  const inner = svgs.map((svg, i) => svg.replace("<svg ", `<svg y="${i * H}" `).replace(/\n$/, ""));
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${
      H * svgs.length
    }" viewBox="0 0 ${W} ${H * svgs.length}">`,
    ...inner,
    "</svg>",
  ].join("\n") + "\n";
}
