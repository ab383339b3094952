// What a Node.js client without Python knowledge sees, for tests/test_node_client.py.
//
// Loads gateway.proto as api.md says, sets nothing but json_arguments, and prints
// one JSON line per step with what came back (the test asserts on them): JSON
// results by default, strict JSON, and each refusal at the door.
'use strict';

const path = require('node:path');
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');

const ROOT = path.resolve(__dirname, '..', '..');
const definition = protoLoader.loadSync('gcgate/v1/gateway.proto', {
  includeDirs: [path.join(ROOT, 'proto')],
  keepCase: true,
  longs: String,
  enums: String,
  defaults: true,
  oneofs: true,
});
const { Gateway } = grpc.loadPackageDefinition(definition).gcgate.v1;
const client = new Gateway(`unix:${process.env.GCGATE_SOCKET}`, grpc.credentials.createInsecure());

// A unary call as a promise of {response} or {code, details}, never a rejection.
function call(method, request) {
  const deadline = new Date(Date.now() + 60_000);
  return new Promise((resolve) => {
    client[method](request, { deadline }, (err, response) =>
      resolve(err ? { code: grpc.status[err.code], details: err.details } : { response }),
    );
  });
}

function emit(check, fields) {
  console.log(JSON.stringify({ check, ...fields }));
}

// Runs fn(value_text) on the local endpoint with JSON arguments only; the record.
async function runReturning(functionId, valueText) {
  const run = await call('Run', {
    endpoint_id: 'local',
    function_id: functionId,
    json_arguments: { args_json: JSON.stringify([valueText]) },
  });
  const got = await call('GetResult', { task_id: run.response.task_id, wait_seconds: 30 });
  return got.response;
}

async function main() {
  const returns = await call('RegisterFunction', {
    function_name: 'returns',
    function_code: 'import json\n\ndef returns(text):\n    return json.loads(text)\n',
  });
  const fid = returns.response.function_id;
  for (const [check, valueText] of [
    ['object', '{"a": [1, 2.5, null], "s": "NaN"}'],
    ['big_integer', '18446744073709551617'],
    ['nan', 'NaN'],
    ['infinity', '[Infinity]'],
  ]) {
    const record = await runReturning(fid, valueText);
    const parsed = record.result_json === '' ? null : JSON.parse(record.result_json);
    emit(check, {
      status: record.status,
      result_json: record.result_json,
      parsed,
      exception: record.exception,
    });
  }

  const refusals = {
    source_without_function: ['RegisterFunction', { function_name: 'q', function_code: 'z = 5\n' }],
    source_commented_out: ['RegisterFunction', { function_name: 'q', function_code: '# def q():\n' }],
    source_syntax_error: ['RegisterFunction', { function_name: 'x', function_code: 'def x(:\n' }],
    run_without_arguments: ['Run', { endpoint_id: 'local', function_id: fid }],
    unknown_result_serializer: [
      'Run',
      {
        endpoint_id: 'local',
        function_id: fid,
        json_arguments: { args_json: '["1"]' },
        options: { result_serializers: ['json'] },
      },
    ],
    capitalised_local: ['Run', { endpoint_id: 'Local', function_id: fid, json_arguments: {} }],
  };
  for (const [check, [method, request]] of Object.entries(refusals)) {
    const { code, details } = await call(method, request);
    emit(check, { code, details });
  }
}

main()
  .catch((err) => {
    console.error(err.stack);
    process.exitCode = 1;
  })
  .finally(() => client.close());
