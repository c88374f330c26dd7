/**
 * Small SVG building blocks for the report: escaping, "nice" axis ticks, axes with units, and
 * legends. Colours come from CSS variables of the page, so charts follow light and dark mode.
 *
 * @module
 */

/** Escapes text for HTML and SVG. */
export const esc = (s: string): string => s.replace(/[&<>"]/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;' })[c]!);

/** Rounds for SVG coordinates. */
export const r1 = (x: number): string => (Math.round(x * 10) / 10).toString();

/** Tick values from `lo` to `hi` at a 1/2/5 x 10^k step, about `count` of them. */
export function niceTicks(lo: number, hi: number, count = 5): number[] {
  if (!(hi > lo)) return [lo];
  const raw = (hi - lo) / Math.max(count, 1);
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((f) => f * mag).find((s) => s >= raw) ?? 10 * mag;
  const out: number[] = [];
  for (let v = Math.ceil(lo / step - 1e-9) * step; v <= hi + step * 1e-9; v += step) out.push(Number(v.toPrecision(12)));
  return out;
}

/** The first nice tick at or above `max` (an axis top with room for the data). */
export function niceMax(max: number, count = 5): number {
  const t = niceTicks(0, max, count);
  const step = t.length > 1 ? t[1] - t[0] : Math.max(max, 1);
  return Math.ceil(max / step - 1e-9) * step;
}

/** An axis range that shows variation: from a nice value below `min` (not 0 unless the data is near 0) to one above `max`. */
export function focusRange(min: number, max: number): [number, number] {
  if (!(max > min)) return [Math.max(0, min - Math.max(Math.abs(min) * 0.05, 1)), max + Math.max(Math.abs(max) * 0.05, 1)];
  const pad = (max - min) * 0.15;
  let lo = min - pad;
  if (lo < (max - min) * 0.5) lo = Math.max(0, lo);
  const t = niceTicks(lo, max + pad, 5);
  const step = t.length > 1 ? t[1] - t[0] : 1;
  return [Math.max(lo >= 0 ? 0 : -Infinity, Math.floor(lo / step) * step), Math.ceil((max + pad) / step) * step];
}

/** A time axis unit for a span: seconds from 2 s up, else milliseconds. */
export function timeUnit(spanMs: number): { unit: 'ms' | 's'; scale: number } {
  return spanMs >= 2000 ? { unit: 's', scale: 1000 } : { unit: 'ms', scale: 1 };
}

/** Formats a tick value with as many decimals as the step needs. */
export function tickLabel(v: number, step: number): string {
  const digits = step >= 1 ? 0 : Math.min(3, Math.ceil(-Math.log10(step) - 1e-9));
  return v.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits });
}

/** A plot area inside an SVG of `width x height` with margins. */
export interface Frame {
  /** SVG width. */
  width: number;
  /** SVG height. */
  height: number;
  /** Left edge of the plot. */
  left: number;
  /** Right edge of the plot. */
  right: number;
  /** Top edge of the plot. */
  top: number;
  /** Bottom edge of the plot. */
  bottom: number;
}

/** A vertical (value) axis with ticks, grid lines and a unit label. */
export function yAxis(f: Frame, lo: number, hi: number, label: string, ticks = niceTicks(lo, hi, 5)): { y: (v: number) => number; svg: string } {
  const y = (v: number) => f.bottom - ((v - lo) / (hi - lo || 1)) * (f.bottom - f.top);
  const step = ticks.length > 1 ? ticks[1] - ticks[0] : 1;
  const marks = ticks
    .filter((v) => v >= lo - 1e-9 && v <= hi + 1e-9)
    .map((v) => `<line class="grid" x1="${f.left}" x2="${f.right}" y1="${r1(y(v))}" y2="${r1(y(v))}"/><text class="tick" x="${f.left - 6}" y="${r1(y(v) + 4)}" text-anchor="end">${tickLabel(v, step)}</text>`)
    .join('');
  const title = `<text class="axis-label" transform="translate(12 ${r1((f.top + f.bottom) / 2)}) rotate(-90)" text-anchor="middle">${esc(label)}</text>`;
  return { y, svg: `${marks}<line class="axis" x1="${f.left}" x2="${f.left}" y1="${f.top}" y2="${f.bottom}"/>${title}` };
}

/** A horizontal (value) axis with ticks and a unit label under it. */
export function xAxis(f: Frame, lo: number, hi: number, label: string, ticks = niceTicks(lo, hi, 8)): { x: (v: number) => number; svg: string } {
  const x = (v: number) => f.left + ((v - lo) / (hi - lo || 1)) * (f.right - f.left);
  const step = ticks.length > 1 ? ticks[1] - ticks[0] : 1;
  const marks = ticks
    .filter((v) => v >= lo - 1e-9 && v <= hi + 1e-9)
    .map((v) => `<line class="grid" x1="${r1(x(v))}" x2="${r1(x(v))}" y1="${f.top}" y2="${f.bottom}"/><text class="tick" x="${r1(x(v))}" y="${f.bottom + 14}" text-anchor="middle">${tickLabel(v, step)}</text>`)
    .join('');
  return { x, svg: `${marks}<line class="axis" x1="${f.left}" x2="${f.right}" y1="${f.bottom}" y2="${f.bottom}"/><text class="axis-label" x="${r1((f.left + f.right) / 2)}" y="${f.height - 4}" text-anchor="middle">${esc(label)}</text>` };
}

/** A legend row of coloured swatches (`cls` is the CSS class giving the colour; `dash` draws a dashed line). */
export function legend(x: number, y: number, items: { label: string; cls: string; dash?: boolean }[]): string {
  let at = x;
  return items
    .map((it) => {
      const swatch = it.dash
        ? `<line class="${it.cls}" x1="${at}" x2="${at + 16}" y1="${y - 4}" y2="${y - 4}"/>`
        : `<rect class="${it.cls}" x="${at}" y="${y - 10}" width="12" height="12"/>`;
      const s = `${swatch}<text class="legend" x="${at + (it.dash ? 20 : 16)}" y="${y}">${esc(it.label)}</text>`;
      at += (it.dash ? 24 : 20) + it.label.length * 6.6 + 14;
      return s;
    })
    .join('');
}

/** Opens an SVG element of a chart. */
export function svgOpen(cls: string, width: number, height: number, title: string): string {
  return `<svg class="chart ${cls}" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" role="img" aria-label="${esc(title)}"><title>${esc(title)}</title>`;
}
