#!/usr/bin/env node
// Search studies, then retrieve a study's metadata and a rendered image, with the npm
// dicomweb-client in Node.
//
//   node search_and_render.mjs --url http://127.0.0.1:8042/dicom-web \
//        [--user NAME --password SECRET] [--out rendered.jpg] [PatientName=Doe*] ...
//
// Each KEYWORD=VALUE argument is a QIDO-RS matching key. The first study found is read with
// WADO-RS (.../studies/{uid}/metadata); its first instance with pixel data is rendered as a
// JPEG (.../instances/{uid}/rendered) and written to --out. The URL and credentials may also
// come from DICOMWEB_URL, DICOMWEB_USER and DICOMWEB_PASSWORD. Exits 1 on any failure.
//
// dicomweb-client uses XMLHttpRequest, which browsers have and Node does not: the xhr2 package
// provides it here (see package.json; install with ./install.sh).

import { writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import XMLHttpRequest from 'xhr2';
import dicomweb from 'dicomweb-client';

globalThis.XMLHttpRequest = XMLHttpRequest;

const { values: options, positionals } = parseArgs({
  options: {
    url: { type: 'string', default: process.env.DICOMWEB_URL || 'http://127.0.0.1:8042/dicom-web' },
    user: { type: 'string', default: process.env.DICOMWEB_USER },
    password: { type: 'string', default: process.env.DICOMWEB_PASSWORD || '' },
    out: { type: 'string', default: 'rendered.jpg' },
  },
  allowPositionals: true,
});

// First value of a DICOM JSON attribute ('' when absent); person names give their letters.
function first(dataset, tag) {
  const value = dataset[tag]?.Value?.[0];
  if (value === undefined) return '';
  return typeof value === 'object' ? value.Alphabetic ?? '' : value;
}

async function main() {
  // HTTP Basic authentication: an Authorization header sent with every request.
  const headers = {};
  if (options.user) {
    const token = Buffer.from(`${options.user}:${options.password}`).toString('base64');
    headers.Authorization = `Basic ${token}`;
  }
  const client = new dicomweb.api.DICOMwebClient({ url: options.url, headers, verbose: false });

  const queryParams = Object.fromEntries(positionals.map((item) => item.split(/=(.*)/s).slice(0, 2)));
  console.log(`searching studies on ${options.url} with ${JSON.stringify(queryParams)}`);
  const studies = await client.searchForStudies({ queryParams });
  console.log(`${studies.length} studies`);
  for (const study of studies) {
    console.log(`  ${first(study, '0020000D')}  ${first(study, '00100010')}  ${first(study, '00080020')}`);
  }
  if (studies.length === 0) throw new Error('no study matches');

  const studyInstanceUID = first(studies[0], '0020000D');
  const metadata = await client.retrieveStudyMetadata({ studyInstanceUID });
  console.log(`study ${studyInstanceUID}: metadata of ${metadata.length} instances`);
  const image = metadata.find((instance) => '7FE00010' in instance);
  if (!image) throw new Error('no instance of the study has pixel data');

  const uids = {
    studyInstanceUID,
    seriesInstanceUID: first(image, '0020000E'),
    sopInstanceUID: first(image, '00080018'),
  };
  console.log(`rendering instance ${uids.sopInstanceUID} (${first(image, '00280010')}x${first(image, '00280011')})`);
  // single-part answers come back as an array holding one ArrayBuffer
  const [jpeg] = await client.retrieveInstanceRendered({
    ...uids,
    mediaTypes: [{ mediaType: 'image/jpeg' }],
  });
  writeFileSync(options.out, Buffer.from(jpeg));
  console.log(`rendered image: ${jpeg.byteLength} bytes written to ${options.out}`);
}

main().catch((error) => {
  // on an HTTP error, dicomweb-client rejects with an Error carrying the status
  console.error(`error: ${error?.message ?? error}${error?.status ? ` (HTTP ${error.status})` : ''}`);
  process.exit(1);
});
