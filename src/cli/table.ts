/**
 * Plain-text tables for the CLI's human output.
 *
 * @module
 */

/** Formats rows as an aligned table with a header rule; numbers are right-aligned. */
export function formatTable(header: string[], rows: (string | number)[][]): string {
  const cells = [header, ...rows.map((r) => r.map(String))];
  const widths = header.map((_, c) => Math.max(...cells.map((r) => (r[c] ?? '').length)));
  const numeric = header.map((_, c) => rows.length > 0 && rows.every((r) => typeof r[c] === 'number' || /^[-+]?[\d.,]+%?x?$/.test(String(r[c]))));
  const line = (r: string[]) => r.map((v, c) => (numeric[c] ? v.padStart(widths[c]) : v.padEnd(widths[c]))).join('  ').trimEnd();
  return [line(header), widths.map((w) => '-'.repeat(w)).join('  '), ...cells.slice(1).map(line)].join('\n');
}

/** A progress bar on stderr when it is a terminal; returns the callback and a closer. */
export function progressBar(label: string): { onProgress?: (done: number, total: number) => void; done: () => void } {
  if (!process.stderr.isTTY) return { done: () => {} };
  const width = 30;
  return {
    onProgress: (done, total) => {
      const f = total > 0 ? Math.min(done / total, 1) : 1;
      const fill = Math.round(f * width);
      process.stderr.write(`\r${label} [${'#'.repeat(fill)}${'.'.repeat(width - fill)}] ${(f * 100).toFixed(0).padStart(3)}%`);
    },
    done: () => process.stderr.write('\r\x1b[K'),
  };
}
