/**
 * The line page's routes over real HTTP on a real fleet, fed by real MQTT ingest of results with
 * past timestamps: bucket alignment and bounds, auto bucket sizes, series by label and version,
 * a second line overlaid, the CSV as exactly the JSON view (formula-safe), a version's
 * before/after figures, the shift table from the configured calendar, and who may read them.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { register, startFleet } from './control-helpers.js';
import { connectSimEdge } from '../helpers/sim-edge.js';
import { HOUR, MINUTE, countIn, pastResults, sendPast } from '../console/line-history.js';
import { resolveFleetConfig } from '../../fleet-manager/config.js';
import { shiftGrainMs, shiftTable } from '../../fleet-manager/line-series.js';

interface View {
  from: number;
  to: number;
  bucket: string;
  bucketMs: number;
  compare: string | null;
  starts: number[];
  series: { line: string; key: string; total: number[]; defect: number[] }[];
  versions: { line: string; model: string; first: number; last: number; count: number }[];
}
const sum = (a: number[]) => a.reduce((x, y) => x + y, 0);

test('line series, compare and shifts answer from the ingested past; the CSV is the view', { timeout: 60_000 }, async (t) => {
  const fleet = await startFleet(t, { shifts: [{ name: 'Night', start: '22:00' }, { name: 'Day', start: '06:00' }, { name: 'Swing', start: '14:00' }] });
  const viewer = await fleet.creds.headers('viewer');
  const get = async (path: string, headers: Record<string, string> = viewer) => {
    const res = await fetch(`${fleet.httpUrl}${path}`, { headers });
    const text = await res.text();
    return { status: res.status, type: res.headers.get('content-type') ?? '', text, json: () => JSON.parse(text) };
  };

  const T0 = Math.floor(Date.now() / HOUR) * HOUR - 6 * HOUR;
  const switchAt = T0 + 3 * HOUR + 30 * MINUTE + 7_000;
  const common = { from: T0, to: T0 + 6 * HOUR, switchAt, oldModel: 'inspect@1', newModel: 'inspect@2', defectEvery: { old: 5, new: 10 } };
  const a1 = pastResults(common);
  const a2 = pastResults({ ...common, offsetMs: 20_000 });
  const b1 = pastResults({ ...common, switchAt: T0 + 10 * HOUR, defectEvery: { old: 4, new: 4 } }).map((r, i) => (i === 0 ? { ...r, label: '=HYPERLINK("x")' } : r));
  for (const [id, line, records] of [['a-1', 'line-A', a1], ['a-2', 'line-A', a2], ['b-1', 'line-B', b1]] as const) {
    const edge = await connectSimEdge(fleet.mqttUrl, { id, credential: await fleet.creds.enrollEdge(id), line, localModel: { name: 'inspect', version: '1' } });
    t.after(() => edge.close());
    await sendPast(edge, records);
  }
  const lineA = [...a1, ...a2];
  // A real rollout of inspect@2 to line-A: a marker on line-A's chart, none on line-B's.
  await register(fleet.httpUrl, 'inspect', '2', fleet.admin);
  const rollout = await fleet.api('POST', '/api/rollouts', { model: 'inspect', version: '2', target: { lines: ['line-A'] }, stages: [{ mode: 'shadow' }] });
  assert.equal(rollout.status, 201, JSON.stringify(rollout.body));

  // Aligned buckets: an unaligned range widens to whole 5-minute buckets; every bucket is present.
  const from = T0 + 7 * MINUTE + 3_000;
  const to = T0 + 2 * HOUR + 2 * MINUTE;
  const v = (await get(`/api/lines/line-A/series?from=${from}&to=${to}&bucket=5m`)).json() as View;
  assert.equal(v.bucketMs, 5 * MINUTE);
  assert.equal(v.from, T0 + 5 * MINUTE);
  assert.equal(v.to, T0 + 2 * HOUR + 5 * MINUTE);
  assert.equal(v.starts.length, (v.to - v.from) / v.bucketMs);
  assert.ok(v.starts.every((s, i) => s === v.from + i * v.bucketMs && s % v.bucketMs === 0));
  assert.deepEqual(v.series.map((s) => s.key), ['all']);
  const all = v.series[0]!;
  assert.deepEqual({ total: sum(all.total), defect: sum(all.defect) }, countIn(lineA, v.from, v.to));
  assert.deepEqual({ total: all.total[3]!, defect: all.defect[3]! }, countIn(lineA, v.starts[3]!, v.starts[4]!));

  // auto: at most 300 buckets, at least a minute.
  for (const [span, bucket, n] of [[15 * MINUTE, '1m', 15], [HOUR, '1m', 60], [8 * HOUR, '2m', 240], [24 * HOUR, '5m', 288], [7 * 24 * HOUR, '1h', 168], [30 * 24 * HOUR, '3h', 240], [90 * 24 * HOUR, '12h', 180]] as const) {
    const end = T0 + 6 * HOUR;
    const w = (await get(`/api/lines/line-A/series?from=${end - span}&to=${end}`)).json() as View;
    assert.equal(w.bucket, bucket, `span ${span}`);
    assert.ok(w.starts.length >= n && w.starts.length <= n + 1, `span ${span}: ${w.starts.length} buckets`);
  }

  // Absurd requests: one line each, naming the parameter.
  for (const [q, status, msg] of [
    [`from=${T0 - 30 * 24 * HOUR}&to=${T0}&bucket=1m`, 400, /^querystring\/bucket 1m gives 43200 buckets over this range; at most 2000$/],
    [`from=${T0}&to=${T0 + HOUR}&bucket=30s`, 400, /^querystring\/bucket 30s must be a whole number of minutes$/],
    [`from=${T0}&to=${T0}`, 400, /^querystring\/from must be before to$/],
    [`from=yesterday`, 400, /^querystring\/from must be an ISO 8601 date or epoch milliseconds$/],
    [`by=camera`, 400, /by/],
    [`compare=line-Z`, 404, /^querystring\/compare: line line-Z not found$/],
  ] as const) {
    const r = await get(`/api/lines/line-A/series?${q}`);
    assert.equal(r.status, status, q);
    assert.match(r.json().message, msg, q);
  }
  assert.equal((await get('/api/lines/line-Q/series')).status, 404);

  // By label and by version; the versions' exact first results.
  const range = `from=${T0}&to=${T0 + 6 * HOUR}`;
  const byLabel = (await get(`/api/lines/line-A/series?${range}&by=label`)).json() as View;
  assert.deepEqual(byLabel.series.map((s) => s.key), ['dent', 'good', 'scratch']);
  assert.equal(sum(byLabel.series.find((s) => s.key === 'scratch')!.total), lineA.filter((r) => r.label === 'scratch').length);
  const byVersion = (await get(`/api/lines/line-A/series?${range}&by=version`)).json() as View;
  assert.equal(byVersion.bucket, '2m');
  assert.deepEqual(byVersion.series.map((s) => s.key), ['inspect@1', 'inspect@2']);
  for (const s of byVersion.series) {
    const mine = lineA.filter((r) => r.model === s.key);
    assert.deepEqual([sum(s.total), sum(s.defect)], [mine.length, mine.filter((r) => r.verdict === 'defect').length]);
  }
  const v2 = byVersion.versions.find((x) => x.model === 'inspect@2')!;
  assert.equal(v2.first, Math.min(...lineA.filter((r) => r.model === 'inspect@2').map((r) => r.ts)));
  assert.equal(v2.count, lineA.filter((r) => r.model === 'inspect@2').length);

  const markers = (await get(`/api/lines/line-A/series`)).json().rollouts;
  assert.deepEqual(markers.map((r: { id: string; model: string; version: string }) => [r.id, r.model, r.version]), [[rollout.body.id, 'inspect', '2']]);
  assert.equal(markers[0].createdAt, rollout.body.createdAt);
  assert.deepEqual((await get(`/api/lines/line-B/series`)).json().rollouts, []);

  // A second line overlaid.
  const both = (await get(`/api/lines/line-A/series?${range}&compare=line-B`)).json() as View;
  assert.equal(both.compare, 'line-B');
  assert.deepEqual(both.series.map((s) => `${s.line}/${s.key}`), ['line-A/all', 'line-B/all']);
  assert.equal(sum(both.series[1]!.total), b1.length);

  // The CSV is the view: one row per bucket × series, same numbers; a formula-like label is defused.
  const csv = await get(`/api/lines/line-A/series?${range}&compare=line-B&by=label&format=csv`);
  assert.equal(csv.status, 200);
  assert.match(csv.type, /^text\/csv/);
  const json = (await get(`/api/lines/line-A/series?${range}&compare=line-B&by=label`)).json() as View;
  const rows = csv.text.trimEnd().split('\r\n');
  assert.equal(rows[0], 'bucket_start,bucket_start_ms,line,series,total,defect,defect_rate');
  const expected = json.starts.flatMap((s, i) =>
    json.series.map((se) => [new Date(s).toISOString(), String(s), se.line, se.key, String(se.total[i]), String(se.defect[i]), se.total[i] === 0 ? '' : (se.defect[i]! / se.total[i]!).toFixed(6)]),
  );
  assert.equal(rows.length - 1, expected.length);
  const unsafe = expected.filter((e) => e[3]!.startsWith('='));
  assert.ok(unsafe.length > 0);
  for (const e of unsafe) e[3] = `"'=HYPERLINK(""x"")"`;
  assert.deepEqual(rows.slice(1), expected.map((e) => e.join(',')));

  // Before / after the new version, over the whole past.
  const cmp = await get(`/api/lines/line-A/compare?version=inspect@2&${range}`);
  assert.equal(cmp.status, 200, cmp.text);
  const c = cmp.json();
  assert.equal(c.start, v2.first);
  const before = countIn(lineA, T0, v2.first);
  const after = countIn(lineA, v2.first, T0 + 6 * HOUR);
  assert.deepEqual([c.before.total, c.before.defect, c.after.total, c.after.defect], [before.total, before.defect, after.total, after.defect]);
  assert.equal(c.before.defectRate, before.defect / before.total);
  assert.equal((await get('/api/lines/line-A/compare?version=inspect@9')).status, 404);
  assert.equal((await get(`/api/lines/line-A/compare?version=inspect@2&from=${v2.first + 1}&to=${v2.first + HOUR}`)).status, 400);

  // Shifts: every result in exactly one local day × shift cell, shifts in calendar order.
  const sh = (await get(`/api/lines/line-A/shifts?${range}`)).json();
  assert.deepEqual(sh.shifts, [{ name: 'Day', start: '06:00' }, { name: 'Swing', start: '14:00' }, { name: 'Night', start: '22:00' }]);
  assert.equal(sum(sh.totals.map((x: { total: number }) => x.total)), lineA.length);
  assert.equal(sum(sh.days.flatMap((d: { shifts: { total: number }[] }) => d.shifts.map((x) => x.total))), lineA.length);
  const dayOf = (ts: number) => {
    const d = new Date(ts);
    const m = d.getHours() * 60 + d.getMinutes();
    return m >= 360 && m < 840 ? 'Day' : m >= 840 && m < 1320 ? 'Swing' : 'Night';
  };
  for (const name of ['Day', 'Swing', 'Night']) {
    assert.equal(sh.totals.find((x: { shift: string }) => x.shift === name).total, lineA.filter((r) => dayOf(r.ts) === name).length, name);
  }

  const far = await get(`/api/lines/line-A/shifts?from=${T0 - 500 * 24 * HOUR}&to=${T0}`);
  assert.equal(far.status, 400);
  assert.equal(far.json().message, 'querystring/from and to span more than 400 days');

  // fleet:read: a viewer reads; no credential, no answer.
  assert.equal((await get(`/api/lines/line-A/series`, {})).status, 401);
  assert.equal((await get(`/api/lines/line-A/shifts`, {})).status, 401);
});

test('a shift calendar with one start twice is refused, naming the field', () => {
  assert.throws(
    () => resolveFleetConfig({ shifts: [{ name: 'A', start: '06:00' }, { name: 'B', start: '06:00' }] }),
    /shifts\/1\/start 06:00 is another shift's start too/,
  );
  assert.throws(() => resolveFleetConfig({ shifts: [{ name: 'A', start: '6:00' }] }), /shifts\/0\/start/);
  assert.deepEqual(resolveFleetConfig({}).shifts.map((s) => s.name), ['Early', 'Late', 'Night']);
});

test('shift table: a night shift past midnight counts on the day it began; the grain follows the calendar', () => {
  const shifts = [{ name: 'Day', start: '06:00' }, { name: 'Late', start: '14:00' }, { name: 'Night', start: '22:00' }];
  const at = (day: number, h: number, m = 0) => new Date(2026, 2, day, h, m).getTime(); // local times
  const row = (bucket: number, verdict: 'ok' | 'defect', count: number) => ({ bucket, verdict, label: verdict === 'ok' ? 'good' : 'dent', model: 'm@1', count });
  const t = shiftTable([row(at(10, 5, 59), 'ok', 1), row(at(10, 6), 'ok', 3), row(at(10, 23), 'defect', 2), row(at(11, 2), 'ok', 4), row(at(11, 7), 'defect', 1)], shifts);
  assert.deepEqual(t.days, [
    { day: '2026-03-09', shifts: [{ shift: 'Day', total: 0, defect: 0 }, { shift: 'Late', total: 0, defect: 0 }, { shift: 'Night', total: 1, defect: 0 }] },
    { day: '2026-03-10', shifts: [{ shift: 'Day', total: 3, defect: 0 }, { shift: 'Late', total: 0, defect: 0 }, { shift: 'Night', total: 6, defect: 2 }] },
    { day: '2026-03-11', shifts: [{ shift: 'Day', total: 1, defect: 1 }, { shift: 'Late', total: 0, defect: 0 }, { shift: 'Night', total: 0, defect: 0 }] },
  ]);
  assert.deepEqual(t.totals, [{ shift: 'Day', total: 4, defect: 1 }, { shift: 'Late', total: 0, defect: 0 }, { shift: 'Night', total: 7, defect: 2 }]);
  assert.equal(shiftGrainMs(shifts, 60), HOUR);
  assert.equal(shiftGrainMs([{ name: 'A', start: '06:30' }, { name: 'B', start: '18:30' }], 60), 30 * MINUTE);
  assert.equal(shiftGrainMs(shifts, 330), 30 * MINUTE, 'a zone at +05:30');
});
