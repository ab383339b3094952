#!/usr/bin/env node
// A Node.js client of the gcgate daemon, using nothing but the .proto contract.
//
// It registers a Python function from its source text (Node cannot pickle
// Python), runs it with JSON arguments -- several tasks in one BatchRun and one
// Run with a keyword argument -- gets JSON results by default, watches the batch's
// completions on the WatchTasks stream, waits for the Run's result with
// GetResult, and prints every result.
//
//   npm ci && node client.js [--socket PATH] [--endpoint ID] [--timeout SECONDS] [--] [VALUE ...]
//
// Each VALUE is a JSON value squared by one batch task (default: 1 2 3 4 5; put
// "--" before values that start with "-", such as -4); the Run task computes
// square(10, offset=1). --endpoint is an endpoint UUID, or "local" (the default:
// the daemon's embedded endpoint). Output, one line per event:
//
//   daemon: gcgated 0.1.0 at /run/user/1000/gcgate/gcgate.sock
//   function: square <function id>
//   batch: 5 tasks <task id> ... (task group <id>)
//   run: task <task id>
//   result: square(3) = 9 [task <task id>]
//   result: square(10, offset=1) = 101 [task <task id>]
//   failed: square("a") [task <task id>]: TypeError: can't multiply ...
//   done: 6 tasks, 6 succeeded
//
// Exit codes: 0 every task succeeded; 1 a task failed (or its result could not
// be read); 2 bad command line; 3 the daemon cannot be reached; 4 the daemon
// refused a request (the gRPC status code and message are printed).
'use strict';

const fs = require('node:fs');
const net = require('node:net');
const os = require('node:os');
const path = require('node:path');
const { parseArgs } = require('node:util');

const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');

// The contract, by relative path from this file: proto/gcgate/v1/gateway.proto.
const PROTO_ROOT = path.resolve(__dirname, '..', '..', 'proto');
const PROTO_FILE = 'gcgate/v1/gateway.proto';

// The daemon accepts 10 MB submissions and may answer with large results; gRPC's
// default 4 MiB receive limit would refuse them. Same limit as the Python client.
const MAX_MESSAGE_BYTES = 64 * 1024 * 1024;

const FUNCTION_NAME = 'square';
const FUNCTION_SOURCE = `\
def square(x, offset=0):
    """x squared, plus offset."""
    return x * x + offset
`;

const EXIT = { OK: 0, TASK_FAILED: 1, USAGE: 2, UNREACHABLE: 3, REFUSED: 4 };
const START_HINT = 'start it with `gcgated` (or `gcgated --socket PATH`), or set GCGATE_SOCKET';

class Fatal extends Error {
  constructor(message, exitCode) {
    super(message);
    this.exitCode = exitCode;
  }
}

// Where the daemon listens, found as the Python client finds it: GCGATE_SOCKET;
// else $XDG_RUNTIME_DIR/gcgate/gcgate.sock (without XDG_RUNTIME_DIR,
// /tmp/gcgate-<uid>/gcgate.sock); else the system service's /run/gcgate/gcgate.sock.
function defaultSocketPath() {
  if (process.env.GCGATE_SOCKET) return process.env.GCGATE_SOCKET;
  const runtime = process.env.XDG_RUNTIME_DIR;
  const user = runtime
    ? path.join(runtime, 'gcgate', 'gcgate.sock')
    : path.join('/tmp', `gcgate-${os.userInfo().uid}`, 'gcgate.sock');
  const system = '/run/gcgate/gcgate.sock';
  return !fs.existsSync(user) && fs.existsSync(system) ? system : user;
}

function unreachable(socketPath, reason) {
  return new Fatal(
    `cannot reach the gcgate daemon at ${socketPath}: ${reason}; ${START_HINT}`,
    EXIT.UNREACHABLE,
  );
}

// Connect to the socket once, without gRPC, to tell the usual failures apart
// at once (gRPC itself would only retry until a deadline and say UNAVAILABLE).
function probeSocket(socketPath) {
  return new Promise((resolve, reject) => {
    const conn = net.connect({ path: socketPath });
    conn.once('connect', () => {
      conn.destroy();
      resolve();
    });
    conn.once('error', (err) => {
      const reasons = {
        ENOENT: 'no such socket (is the daemon running?)',
        ECONNREFUSED: 'nobody is listening (a stale socket of a daemon that exited?)',
        EACCES: 'permission denied: your user may not open this socket',
        ENOTSOCK: 'not a socket',
      };
      reject(unreachable(socketPath, reasons[err.code] || err.message));
    });
  });
}

function loadGateway() {
  const definition = protoLoader.loadSync(PROTO_FILE, {
    includeDirs: [PROTO_ROOT],
    keepCase: true, // field names as in the .proto (and grpcurl): function_id, task_ids, ...
    longs: String, // int64 counters as strings, as in the proto3 JSON mapping
    enums: String,
    defaults: true, // unset fields read as their zero value ("" / false / 0)
    oneofs: true, // RunRequest.arguments names the argument field that is set
  });
  return grpc.loadPackageDefinition(definition).gcgate.v1.Gateway;
}

// One unary call as a promise; a gRPC error becomes a Fatal with a clear message.
function unary(client, socketPath, method, request, seconds = 30) {
  const deadline = new Date(Date.now() + seconds * 1000);
  return new Promise((resolve, reject) => {
    client[method](request, { deadline }, (err, response) =>
      err ? reject(rpcFailure(socketPath, method, err)) : resolve(response),
    );
  });
}

function rpcFailure(socketPath, method, err) {
  const code = grpc.status[err.code] || String(err.code);
  if (err.code === grpc.status.UNAVAILABLE) {
    return unreachable(socketPath, `${method} failed: ${err.details || err.message}`);
  }
  return new Fatal(`${method} refused: ${code}: ${err.details || err.message}`, EXIT.REFUSED);
}

// Tasks given json_arguments return JSON by default: result_json is the result as
// strict JSON text (record.result keeps it in the Compute format, "11\n<json>").
function parseJsonResult(record) {
  if (record.result_json === '') {
    throw new Fatal(
      `result is not JSON (it begins ${JSON.stringify(record.result.slice(0, 3))})`,
      EXIT.TASK_FAILED,
    );
  }
  return JSON.parse(record.result_json);
}

function lastLine(text) {
  const lines = text.trim().split('\n');
  return lines[lines.length - 1];
}

// Print one final task record; returns true when it succeeded.
function report(record, label) {
  if (record.status === 'success') {
    const value = parseJsonResult(record);
    console.log(`result: ${label} = ${JSON.stringify(value)} [task ${record.task_id}]`);
    return true;
  }
  console.log(`failed: ${label} [task ${record.task_id}]: ${lastLine(record.exception)}`);
  return false;
}

function parseCommandLine(argv) {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      options: {
        socket: { type: 'string' },
        endpoint: { type: 'string', default: 'local' },
        timeout: { type: 'string', default: '120' },
        help: { type: 'boolean', short: 'h' },
      },
      allowPositionals: true,
    });
  } catch (err) {
    throw new Fatal(err.message, EXIT.USAGE);
  }
  const { values, positionals } = parsed;
  if (values.help) {
    console.log(
      'usage: node client.js [--socket PATH] [--endpoint ID] [--timeout SECONDS] [--] [VALUE ...]',
    );
    process.exit(EXIT.OK);
  }
  const timeout = Number(values.timeout);
  if (!(timeout > 0)) throw new Fatal(`--timeout must be a positive number`, EXIT.USAGE);
  const inputs = (positionals.length ? positionals : ['1', '2', '3', '4', '5']).map((text) => {
    try {
      return JSON.parse(text);
    } catch {
      throw new Fatal(`each VALUE must be JSON (e.g. 3 or '"text"'), got ${text}`, EXIT.USAGE);
    }
  });
  const socketPath = values.socket || defaultSocketPath();
  return { socketPath, endpointId: values.endpoint, timeout, inputs };
}

async function main() {
  const { socketPath, endpointId, timeout, inputs } = parseCommandLine(process.argv.slice(2));
  await probeSocket(socketPath);

  const Gateway = loadGateway();
  const client = new Gateway(`unix:${socketPath}`, grpc.credentials.createInsecure(), {
    'grpc.max_receive_message_length': MAX_MESSAGE_BYTES,
    'grpc.max_send_message_length': MAX_MESSAGE_BYTES,
  });
  const call = (method, request, seconds) => unary(client, socketPath, method, request, seconds);
  try {
    const status = await call('Status', {});
    console.log(`daemon: gcgated ${status.version} at ${status.socket_path}`);

    // 1. Register the function from its source text (serialized: false).
    const registered = await call('RegisterFunction', {
      function_name: FUNCTION_NAME,
      function_code: FUNCTION_SOURCE,
      serialized: false,
      description: 'x squared, plus offset (registered from Node.js)',
    });
    const functionId = registered.function_id;
    console.log(`function: ${FUNCTION_NAME} ${functionId}`);

    // 2. One BatchRun: a task per input, arguments as JSON (so results are JSON).
    const batch = await call('BatchRun', {
      endpoint_id: endpointId,
      tasks: [
        {
          function_id: functionId,
          json_arguments: inputs.map((x) => ({ args_json: JSON.stringify([x]) })),
        },
      ],
    });
    const batchIds = batch.tasks[0].task_ids;
    const labels = new Map(batchIds.map((id, i) => [id, `square(${JSON.stringify(inputs[i])})`]));
    console.log(`batch: ${batchIds.length} tasks ${batchIds.join(' ')} (task group ${batch.task_group_id})`);

    // 3. One Run, with a keyword argument.
    const run = await call('Run', {
      endpoint_id: endpointId,
      function_id: functionId,
      json_arguments: { args_json: '[10]', kwargs_json: JSON.stringify({ offset: 1 }) },
    });
    console.log(`run: task ${run.task_id}`);

    // 4. Watch the batch: each final record arrives as its task completes; the
    //    stream ends when every named task has been sent.
    let succeeded = 0;
    let seen = 0;
    await new Promise((resolve, reject) => {
      const stream = client.WatchTasks(
        { task_ids: batchIds },
        { deadline: new Date(Date.now() + timeout * 1000) },
      );
      stream.on('data', (record) => {
        seen += 1;
        try {
          if (report(record, labels.get(record.task_id))) succeeded += 1;
        } catch (err) {
          stream.cancel();
          reject(err);
        }
      });
      stream.on('error', (err) => reject(rpcFailure(socketPath, 'WatchTasks', err)));
      stream.on('end', resolve);
    });
    if (seen !== batchIds.length) {
      throw new Fatal(`WatchTasks ended after ${seen} of ${batchIds.length} tasks`, EXIT.REFUSED);
    }

    // 5. The Run's result: GetResult waits (up to wait_seconds) until it is final.
    const record = await call(
      'GetResult',
      { task_id: run.task_id, wait_seconds: timeout },
      timeout + 10,
    );
    if (record.pending) {
      throw new Fatal(`task ${run.task_id} still ${record.status} after ${timeout} s`, EXIT.REFUSED);
    }
    if (report(record, 'square(10, offset=1)')) succeeded += 1;

    const total = batchIds.length + 1;
    console.log(`done: ${total} tasks, ${succeeded} succeeded`);
    return succeeded === total ? EXIT.OK : EXIT.TASK_FAILED;
  } finally {
    client.close();
  }
}

main().then(
  (code) => {
    process.exitCode = code;
  },
  (err) => {
    console.error(`error: ${err instanceof Fatal ? err.message : err.stack}`);
    process.exitCode = err instanceof Fatal ? err.exitCode : EXIT.TASK_FAILED;
  },
);
