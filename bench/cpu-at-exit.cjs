// Preloaded (`node -r`) into a compiled CLI run by `npm run bench -- plan`: at exit, prints the
// whole process's CPU time (user + system, all threads, since start) and wall time on stderr.
'use strict';
process.on('exit', () => {
  const cpu = process.cpuUsage();
  require('node:fs').writeSync(2, `\nomnibal-bench-cpu ${JSON.stringify({ cpuMs: (cpu.user + cpu.system) / 1000, wallMs: process.uptime() * 1000 })}\n`);
});
