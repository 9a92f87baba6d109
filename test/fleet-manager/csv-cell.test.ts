import { test } from 'node:test';
import assert from 'node:assert/strict';
import { csvText } from '../../fleet-manager/csv-cell.js';
import { buildLineStats, lineStatsCsv } from '../../fleet-manager/line-stats.js';
import type { StatsRow } from '../../fleet-manager/store.js';

test('csvText: a cell a spreadsheet would run as a formula gets a leading quote; others are unchanged', () => {
  const cases: [string, string][] = [
    ['=1+2', "'=1+2"],
    ['+SUM(A1)', "'+SUM(A1)"],
    ['-2+3', "'-2+3"],
    ['@cmd', "'@cmd"],
    ['\tx', "'\tx"],
    ['\rx', `"'\rx"`],
    ['=HYPERLINK("http://x","y")', `"'=HYPERLINK(""http://x"",""y"")"`],
    ['scratch', 'scratch'],
    ['a-b=c', 'a-b=c'],
    ['a,b', '"a,b"'],
    ['', ''],
  ];
  for (const [input, expected] of cases) assert.equal(csvText(input), expected, JSON.stringify(input));
});

test('the line stats CSV neutralises edge-supplied text; its numbers stay numbers', () => {
  const T0 = Date.UTC(2025, 0, 1);
  const rows: StatsRow[] = [
    { bucket: T0, verdict: 'defect', label: '=cmd|" /C calc"!A0', model: 'm@1', count: 2 },
    { bucket: T0, verdict: 'ok', label: '@good', model: 'm@1', count: 1 },
  ];
  const window = { line: '-line', from: T0, to: T0 + 60_000, bucket: '1m', bucketMs: 60_000 };
  const csv = lineStatsCsv(rows, buildLineStats(rows, window));
  assert.equal(
    csv,
    [
      'bucket_start,bucket_start_ms,line,verdict,label,count,bucket_total,bucket_defect_rate',
      `2025-01-01T00:00:00.000Z,${T0},'-line,defect,"'=cmd|"" /C calc""!A0",2,3,0.666667`,
      `2025-01-01T00:00:00.000Z,${T0},'-line,ok,'@good,1,3,0.666667`,
      '',
    ].join('\r\n'),
  );
});
