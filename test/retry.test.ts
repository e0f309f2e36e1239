import assert from 'node:assert/strict';
import { ClusterError } from '../reconciler/cluster/backend.ts';
import { RetryDecision, retryDecision, withRetry } from '../reconciler/cluster/retry.ts';

describe('cluster retry policy', () => {
  const table: Array<[string, unknown, RetryDecision]> = [
    ['409 Conflict', new ClusterError('Conflict', 'modified', { reason: 'Conflict' }), RetryDecision.refresh],
    ['409 AlreadyExists', new ClusterError('Conflict', 'exists', { reason: 'AlreadyExists' }), RetryDecision.stop],
    ['5xx / timeout', new ClusterError('Unavailable', 'HTTP 503'), RetryDecision.backoff],
    ['404', new ClusterError('NotFound', 'gone'), RetryDecision.stop],
    ['422', new ClusterError('Invalid', 'bad'), RetryDecision.stop],
    ['403', new ClusterError('Forbidden', 'no'), RetryDecision.stop],
    ['a network error', new TypeError('fetch failed'), RetryDecision.backoff],
  ];
  for (const [name, error, decision] of table) {
    it(`${name} → ${decision}`, () => assert.equal(retryDecision(error), decision));
  }

  it('retries server errors with growing, bounded delays, then succeeds', async () => {
    const delays: number[] = [];
    let calls = 0;
    const result = await withRetry(
      async () => {
        calls++;
        if (calls < 4) throw new ClusterError('Unavailable', 'HTTP 500');
        return 'ok';
      },
      { policy: { attempts: 6, baseMs: 100, capMs: 300 }, sleep: async (ms) => void delays.push(ms) },
    );
    assert.equal(result, 'ok');
    assert.equal(calls, 4);
    assert.equal(delays.length, 3);
    assert.ok(delays[0]! >= 50 && delays[0]! <= 100, `first delay ${delays[0]}`);
    assert.ok(delays.every((d) => d <= 300), `delays within the cap: ${delays.join(',')}`);
  });

  it('gives up after the last attempt with the last error', async () => {
    let calls = 0;
    await assert.rejects(
      withRetry(
        async () => {
          calls++;
          throw new ClusterError('Unavailable', `HTTP 503 #${calls}`);
        },
        { policy: { attempts: 3, baseMs: 1, capMs: 1 }, sleep: async () => {} },
      ),
      /HTTP 503 #3/,
    );
    assert.equal(calls, 3);
  });

  it('reads again after a conflict before retrying, without waiting', async () => {
    const steps: string[] = [];
    let calls = 0;
    await withRetry(
      async () => {
        steps.push('apply');
        if (++calls === 1) throw new ClusterError('Conflict', 'modified', { reason: 'Conflict' });
      },
      { refresh: async () => void steps.push('read'), sleep: async () => void steps.push('sleep') },
    );
    assert.deepEqual(steps, ['apply', 'read', 'apply']);
  });

  it('does not retry what needs a person', async () => {
    let calls = 0;
    await assert.rejects(
      withRetry(async () => {
        calls++;
        throw new ClusterError('Invalid', 'spec.template: Required value');
      }),
      /Required value/,
    );
    assert.equal(calls, 1);
  });
});
