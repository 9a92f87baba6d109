/** The skip helper: a reason to skip on a developer's machine, a failure in CI. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { dataSkip, serviceSkip } from './service-skip.js';

test('a missing service skips with its reason, except under CI=true where it fails', () => {
  assert.equal(serviceSkip(false, {}), false);
  assert.equal(serviceSkip(false, { CI: 'true' }), false);
  assert.equal(serviceSkip('mosquitto is not installed', {}), 'mosquitto is not installed');
  assert.throws(() => serviceSkip('mosquitto is not installed', { CI: 'true' }), (err: Error & { code?: string }) => {
    assert.equal(err.code, 'OSP_ERR_TEST_SERVICE_MISSING');
    assert.match(err.message, /CI=true, so this test may not skip: mosquitto is not installed/);
    return true;
  });
});

test('missing shared data skips with the path it looked at, and fails under CI', () => {
  const env = { OSPREY_DATA: '/nonexistent/osprey-data' };
  assert.match(String(dataSkip('models', env)), /\/nonexistent\/osprey-data\/models not found \(set OSPREY_DATA/);
  assert.throws(() => dataSkip('models', { ...env, CI: 'true' }), /CI=true, so this test may not skip: \/nonexistent\/osprey-data\/models not found/);
});
