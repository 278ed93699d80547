// api.js: the Prometheus-shaped HTTP API. Every answer is
// {status, data, warnings?, errorType?, error?}; errors become ApiError.

export class ApiError extends Error {
  constructor(type, message, status) {
    super(message);
    this.type = type;
    this.status = status;
  }
}

async function decode(resp) {
  const text = await resp.text();
  let body;
  try {
    body = JSON.parse(text);
  } catch {
    const snippet = text.trim().slice(0, 200) || resp.statusText;
    throw new ApiError(resp.status === 404 ? 'not_found' : 'bad_response',
      `HTTP ${resp.status}: ${snippet}`, resp.status);
  }
  if (body.status !== 'success') {
    throw new ApiError(body.errorType || 'error', body.error || `HTTP ${resp.status}`, resp.status);
  }
  return {data: body.data, warnings: body.warnings || [], infos: body.infos || []};
}

/** GET path (relative, e.g. 'api/v1/stores') with params (an object or entries). */
export async function apiGet(path, params, signal) {
  const q = new URLSearchParams(params || {}).toString();
  const resp = await fetch(q ? `${path}?${q}` : path, {signal, headers: {Accept: 'application/json'}});
  return decode(resp);
}

/** POST path with params as a form, as Prometheus' own UI does for queries. */
export async function apiPost(path, params, signal) {
  const resp = await fetch(path, {
    method: 'POST',
    signal,
    headers: {Accept: 'application/json', 'Content-Type': 'application/x-www-form-urlencoded'},
    body: new URLSearchParams(params).toString(),
  });
  return decode(resp);
}
