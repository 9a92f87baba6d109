/**
 * Fuzzes the tar reader of model packages, in memory (unpackArchive, what an edge extracts) and
 * on disk (archiveFileSource, what the fleet indexes from an upload): archives with mutated
 * headers, claimed sizes up to 8 GiB, odd names and types, cut anywhere. Each is read or refused
 * with OSP_ERR_MODEL_MANIFEST in one line, and no claimed size is ever allocated.
 */
import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import fc from 'fast-check';
import { archiveFileSource, canonicalDigest } from '../../fleet-manager/package-source.js';
import { packArchive, unpackArchive } from '../../models/package-archive.js';
import { makeTempDir } from '../helpers/temp-dir.js';
import { assertBoundedMemory, assertClearError, editArchive, fuzz, tarEdit } from './arbitraries.js';

const MB = 1024 * 1024;

const base = packArchive({ 'manifest.json': Buffer.from('{"name":"x"}'), 'model.onnx': Buffer.alloc(700, 7), 'post.mjs': Buffer.from('export default 1') });
/** Byte offsets of the three headers in `base`. */
const headers = [0, 1024, 2560];

const archives = fc
  .record({ header: fc.constantFrom(...headers), edits: fc.array(tarEdit, { minLength: 1, maxLength: 3 }), reseal: fc.boolean() })
  .map(({ header, edits, reseal }) => editArchive(base, edits, header, reseal));

test('the memory bound itself catches a parser that allocates a claimed size', async () => {
  // First in the file, while the process's peak is still low: 128 MB touched must show.
  await assert.rejects(
    assertBoundedMemory(64 * MB, 'allocating', () => Buffer.alloc(128 * MB, 1).length),
    /peak RSS grew|ArrayBuffers grew/,
  );
});

test('unpackArchive reads or refuses any mutated archive, without allocating claimed sizes', async () => {
  assert.equal(unpackArchive(base).size, 3);
  await assertBoundedMemory(64 * MB, 'unpackArchive', () =>
    fuzz(
      'unpackArchive',
      fc.property(archives, (archive) => {
        let files: Map<string, Buffer>;
        try {
          files = unpackArchive(archive);
        } catch (err) {
          return assertClearError(err, ['OSP_ERR_MODEL_MANIFEST'], 'unpackArchive');
        }
        // Accepted: every file lies inside the archive's bytes.
        for (const data of files.values()) assert.ok(data.length <= archive.length);
      }),
      10,
    ),
  );
});

test('archiveFileSource indexes or refuses any mutated archive file, without allocating claimed sizes', async (t) => {
  const dir = await makeTempDir(t, 'osprey-fuzz-tar-');
  let n = 0;
  await assertBoundedMemory(64 * MB, 'archiveFileSource', () =>
    fuzz(
      'archiveFileSource',
      fc.asyncProperty(archives, async (archive) => {
        const file = join(dir, `a${n++}.tar`);
        await writeFile(file, archive);
        try {
          const source = await archiveFileSource(file);
          // What it indexed streams back out within the file's bytes.
          for (const size of source.sizes.values()) assert.ok(size <= archive.length);
          await source.manifestBytes();
          await canonicalDigest(source);
        } catch (err) {
          assertClearError(err, ['OSP_ERR_MODEL_MANIFEST'], 'archiveFileSource');
        }
      }),
      3,
    ),
  );
});

test('regression: an entry name with a line break is refused in one line (found by fuzzing)', () => {
  const archive = editArchive(base, [{ kind: 'name', name: '\r\n' }], 0, true);
  try {
    unpackArchive(archive);
    assert.fail('accepted');
  } catch (err) {
    assertClearError(err, ['OSP_ERR_MODEL_MANIFEST'], 'entry name "\\r\\n"');
  }
});
