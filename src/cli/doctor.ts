/**
 * `omnibal doctor`: which backend serves the API, from which binary, on which platform.
 *
 * @module
 */
import { backend, nativeModule } from '../binding';
import { version } from '../package';

/** What `omnibal doctor` reports. */
export interface DoctorReport {
  version: string;
  backend: 'native' | 'js';
  binaryPath: string | null;
  reason: string | null;
  native: { version: string; coreVersion: string; release: boolean } | null;
  platform: string;
  node: string;
  napi: string | null;
}

/** The libc flavour on Linux (`gnu` or `musl`), as the platform packages name it. */
function libc(): string {
  if (process.platform !== 'linux') return '';
  const header = (process.report?.getReport() as { header?: { glibcVersionRuntime?: string } })
    ?.header;
  return header?.glibcVersionRuntime ? '-gnu' : '-musl';
}

/** Collects the report (loads the backend if it is not loaded yet). */
export function doctorReport(): DoctorReport {
  const info = backend();
  const native = nativeModule()?.nativeInfo() ?? null;
  return {
    version,
    backend: info.kind,
    binaryPath: info.path ?? null,
    reason: info.reason ?? null,
    native,
    platform: `${process.platform}-${process.arch}${libc()}`,
    node: process.versions.node,
    napi: process.versions.napi ?? null,
  };
}

/** The report as aligned `key  value` lines. */
export function formatDoctor(report: DoctorReport): string {
  const rows: [string, string][] = [
    ['omnibal', report.version],
    ['backend', report.backend],
    ['binary', report.binaryPath ?? '(none)'],
  ];
  if (report.native) {
    rows.push([
      'native build',
      `${report.native.version} (core ${report.native.coreVersion}, ${report.native.release ? 'release' : 'debug'})`,
    ]);
  }
  if (report.reason) rows.push(['reason', report.reason]);
  rows.push(['platform', report.platform], ['node', report.node], ['n-api', report.napi ?? 'unknown']);
  const width = Math.max(...rows.map(([k]) => k.length));
  return rows.map(([k, v]) => `${k.padEnd(width)}  ${v}`).join('\n');
}
