import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createEdgeFeed } from '../../fleet-manager/edge-feed.js';

test('the edge feed tells each subscriber every changed edge once per tick, in first-change order', async (t) => {
  const feed = createEdgeFeed({ tickMs: 5 });
  t.after(() => feed.close());
  const heard: (readonly string[])[] = [];
  let next!: () => void;
  const listened = () => new Promise<void>((resolve) => (next = resolve));
  const unsubscribe = feed.subscribe((ids) => {
    heard.push(ids);
    next();
  });
  let tick = listened();
  for (const id of ['e1', 'e2', 'e1', 'e1', 'e3', 'e2']) feed.notify(id);
  await tick;
  assert.deepEqual(heard, [['e1', 'e2', 'e3']]);
  tick = listened();
  feed.notify('e2');
  await tick;
  assert.deepEqual(heard, [['e1', 'e2', 'e3'], ['e2']]);

  // Without subscribers nothing gathers: a later subscriber does not hear old changes.
  unsubscribe();
  feed.notify('e9');
  const late: (readonly string[])[] = [];
  feed.subscribe((ids) => {
    late.push(ids);
    next();
  });
  tick = listened();
  feed.notify('e4');
  await tick;
  assert.deepEqual(late, [['e4']]);
});

test('a closed edge feed drops its pending tick and takes no subscribers', async () => {
  const feed = createEdgeFeed({ tickMs: 1 });
  const heard: string[] = [];
  feed.subscribe((ids) => heard.push(...ids));
  feed.notify('e1');
  feed.close();
  feed.close();
  feed.subscribe((ids) => heard.push(...ids))();
  feed.notify('e2');
  // A later timer of the same length runs after the feed's would have.
  await new Promise((resolve) => setTimeout(resolve, 5));
  assert.deepEqual(heard, []);
});
