// The failed-work page: a client of the operator API on the server that serves it.
//
// The address holds the view: its query string is the API's own query keys (kind, queue,
// task, reason, exception, since, until, q, cursor, limit), and #record=<id> opens a record,
// so a view can be shared. The access mode and the trace link come from GET api/v1/ops.
// A token is kept for this tab only (sessionStorage), sent as a bearer header, never put in
// a cookie or the address.
//
// Every string from a record is set as text (textContent, or a Text node): nothing here
// parses HTML, and the page's Content-Security-Policy (require-trusted-types-for 'script')
// makes the browser refuse it if anything did.
"use strict";

(() => {
  const API = "api/v1/";
  const FILTER_KEYS = ["kind", "queue", "task", "reason", "exception", "since", "until", "q"];
  const FORM_KEYS = [...FILTER_KEYS, "limit"];
  const QUERY_KEYS = [...FILTER_KEYS, "cursor", "limit"];
  const GROUP_KEYS = ["kind", "queue", "task", "exception"];
  const TOKEN_KEY = "jobpilot-ops-token";
  const TRACE_ID = /^[0-9a-f]{32}$/;
  const RECORD_HASH = /^#record=([A-Za-z0-9-]{1,64})$/;
  const PLACEHOLDER = "{trace_id}";
  const KIND_NAMES = { exhausted: "exhausted", dead_letter: "dead letter" };
  const SKIP_NAMES = {
    in_canvas: "in a group, chord or with callbacks",
    invalid_message: "a message the worker would refuse again",
    unknown_queue: "a queue this server does not requeue to",
    not_found: "gone already",
  };

  const $ = (id) => document.getElementById(id);
  const state = {
    writes: "off",
    reads: "open",
    traceUrl: null,
    count: 0,
    next: null,
    selected: new Set(),
    record: null,
    loads: 0,
    pending: null,
    changed: false,
  };

  // DOM ------------------------------------------------------------------------------
  /** An element; props set attributes (text: textContent), children are nodes or text. */
  function el(tag, props, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(props || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (name === "text") node.textContent = String(value);
      else if (name === "className") node.className = value;
      else node.setAttribute(name, String(value));
    }
    for (const child of children) {
      if (child === null || child === undefined) continue;
      node.append(typeof child === "object" ? child : String(child)); // text stays text
    }
    return node;
  }

  const shown = (value) => (value === null || value === undefined || value === "" ? "—" : value);
  const plural = (n, word) => `${n} ${word}${n === 1 ? "" : "s"}`;

  function timeNode(iso) {
    const when = new Date(iso);
    const text = Number.isNaN(when.getTime())
      ? String(iso)
      : when.toLocaleString(undefined, { dateStyle: "short", timeStyle: "medium" });
    return el("time", { datetime: iso, title: iso }, text);
  }

  /** "exhausted", or a dead letter with its reason: "dead letter: not_json". */
  function kindText(item) {
    const kind = KIND_NAMES[item.kind] || item.kind;
    return item.reason && item.reason !== item.kind && item.reason !== "exhausted"
      ? `${kind}: ${item.reason}`
      : kind;
  }

  function cell(label, content, className) {
    return el("td", { "data-label": label, className }, shown(content));
  }

  function traceLink(traceId, whole) {
    if (!state.traceUrl || typeof traceId !== "string" || !TRACE_ID.test(traceId)) return "—";
    return el(
      "a",
      {
        href: state.traceUrl.split(PLACEHOLDER).join(traceId),
        target: "_blank",
        rel: "noopener noreferrer",
        className: "trace code",
        title: `Trace ${traceId}`,
      },
      whole ? traceId : `${traceId.slice(0, 8)}…`,
    );
  }

  /** The body is aria-busy while a view loads (the HTML starts so, until the first one). */
  const busy = (on) =>
    on ? document.body.setAttribute("aria-busy", "true") : document.body.removeAttribute("aria-busy");

  function setStatus(text, error) {
    const status = $("status");
    status.textContent = text;
    status.classList.toggle("error", !!error);
  }

  // The API -------------------------------------------------------------------------------
  const token = {
    get() {
      try {
        return sessionStorage.getItem(TOKEN_KEY) || "";
      } catch {
        return "";
      }
    },
    set(value) {
      sessionStorage.setItem(TOKEN_KEY, value);
    },
    forget() {
      sessionStorage.removeItem(TOKEN_KEY);
    },
  };

  class ApiError extends Error {
    constructor(status, answer) {
      super((answer && answer.error) || `the operator API answered ${status}`);
      this.status = status;
      this.key = answer && answer.key;
    }
  }

  async function api(path, body) {
    const headers = { Accept: "application/json" };
    const held = token.get();
    if (held) headers.Authorization = `Bearer ${held}`;
    const init = { headers, cache: "no-store", credentials: "omit", redirect: "error" };
    if (body !== undefined) {
      init.method = "POST";
      headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    let response;
    try {
      response = await fetch(API + path, init);
    } catch {
      throw new ApiError(0, { error: "the operator API did not answer" });
    }
    let answer = null;
    try {
      answer = await response.json();
    } catch {
      answer = null;
    }
    if (!response.ok) throw new ApiError(response.status, answer);
    return answer;
  }

  function explain(error) {
    if (!(error instanceof ApiError)) return `Something went wrong: ${error}`;
    if (error.status === 401) return "The operator token is missing or wrong: type it above.";
    if (error.status === 403) {
      return "Read-only: the exporter has no OPS_TOKEN, so nothing can be changed here.";
    }
    if (error.status === 503) return `The broker is unavailable (${error.message}).`;
    if (error.status === 0) return "The operator API did not answer.";
    return error.message;
  }

  function failed(error) {
    setStatus(explain(error), true);
    if (error.status === 400 && error.key) markInvalid(error.key);
    if (error.status === 401) {
      $("token-form").hidden = false;
      $("token").focus();
    }
  }

  // The address -----------------------------------------------------------------------------
  function pick(params, keys) {
    const picked = new URLSearchParams();
    for (const key of keys) {
      const value = params.get(key);
      if (value) picked.set(key, value);
    }
    return picked;
  }

  const currentQuery = () => pick(new URLSearchParams(location.search), QUERY_KEYS);
  const search = (params) => (params.toString() ? `?${params}` : "");

  function filterObject(params) {
    const filter = {};
    for (const key of FILTER_KEYS) if (params.get(key)) filter[key] = params.get(key);
    return filter;
  }

  function go(params) {
    history.pushState(null, "", `${location.pathname}${search(params)}`);
    render();
  }

  function recordInAddress() {
    const match = RECORD_HASH.exec(location.hash);
    return match ? match[1] : null;
  }

  // The filter form ----------------------------------------------------------------------------
  const field = (key) => $("filters").elements.namedItem(key);

  function fillForm(params) {
    for (const key of FORM_KEYS) {
      const input = field(key);
      const value = params.get(key) || "";
      if (input.tagName === "SELECT" && ![...input.options].some((o) => o.value === value)) {
        input.append(el("option", { value }, value));
      }
      input.value = value;
      input.removeAttribute("aria-invalid");
    }
  }

  function formQuery() {
    const params = new URLSearchParams();
    for (const key of FORM_KEYS) {
      const value = field(key).value.trim();
      if (value) params.set(key, value);
    }
    return params;
  }

  function markInvalid(key) {
    const input = field(key.replace(/^filter\./, ""));
    if (input) {
      input.setAttribute("aria-invalid", "true");
      input.focus();
    }
  }

  // The lists ---------------------------------------------------------------------------------
  async function loadLists() {
    const seq = ++state.loads;
    const query = currentQuery();
    fillForm(query);
    busy(true);
    setStatus("Loading…");
    try {
      const [groups, listing] = await Promise.all([
        api(`failed/groups${search(pick(query, FILTER_KEYS))}`),
        api(`failed${search(query)}`),
      ]);
      if (seq !== state.loads) return;
      renderGroups(groups, query);
      renderRecords(listing, query);
      setStatus("");
    } catch (error) {
      if (seq === state.loads) {
        if (error.status === 401) clearLists(); // nothing read with a token stays without it
        failed(error);
      }
    }
    if (seq === state.loads) busy(false);
  }

  function clearLists() {
    $("groups").tBodies[0].replaceChildren();
    $("records").tBodies[0].replaceChildren();
    $("groups-total").textContent = $("records-total").textContent = "";
    state.count = 0;
    state.selected.clear();
    updateWriteControls();
  }

  function renderGroups(answer, query) {
    const rows = answer.groups.map((group) => {
      const label = GROUP_KEYS.map((key) => shown(group[key])).join(", ");
      const show = el("button", { type: "button", "aria-label": `Show ${label}` }, "Show");
      show.addEventListener("click", () => {
        const params = pick(query, [...FILTER_KEYS, "limit"]);
        for (const key of GROUP_KEYS) if (group[key]) params.set(key, group[key]);
        go(params);
      });
      return el(
        "tr",
        {},
        cell("Kind", KIND_NAMES[group.kind] || group.kind),
        cell("Queue", group.queue),
        cell("Task", group.task, "code"),
        cell("Exception", group.exception, "code"),
        cell("Count", group.count, "number"),
        cell("Newest", timeNode(group.newest)),
        cell("", show),
      );
    });
    $("groups").tBodies[0].replaceChildren(...rows);
    $("groups-total").textContent =
      `${plural(answer.count, "record")} in ${plural(answer.groups.length, "group")}`;
  }

  function renderRecords(listing, query) {
    state.count = listing.count;
    state.next = listing.next;
    state.selected.clear();
    const body = $("records").tBodies[0];
    body.replaceChildren(...listing.items.map(recordRow));
    if (!listing.items.length) {
      const columns = $("records").tHead.rows[0].cells.length;
      body.append(el("tr", {}, el("td", { colspan: columns }, "No failed work matches.")));
    }
    $("records-total").textContent = `Showing ${listing.items.length} of ${listing.count} matching`;
    $("older").disabled = !listing.next;
    $("newest").disabled = !query.has("cursor");
    updateWriteControls();
  }

  function recordRow(item) {
    const cells = [];
    const row = el("tr", { "data-id": item.id });
    if (writable()) {
      const box = el("input", {
        type: "checkbox",
        className: "select",
        "aria-label": `Select ${item.task || "the record"} failed at ${item.failed_at}`,
      });
      box.addEventListener("change", () => select(item.id, box.checked, row));
      cells.push(el("td", { "data-label": "Select" }, box));
    }
    const open = el("a", { href: `#record=${encodeURIComponent(item.id)}` }, timeNode(item.failed_at));
    const message = cell("Message", item.message, "message");
    if (item.message) message.title = item.message;
    cells.push(
      cell("Failed at", open),
      cell("Kind", kindText(item)),
      cell("Queue", item.queue),
      cell("Task", item.task, "code"),
      cell("Exception", item.exception, "code"),
      message,
      cell("Retries", item.retries, "number"),
      cell("Trace", traceLink(item.trace_id, false)),
    );
    row.append(...cells);
    return row;
  }

  function select(id, on, row) {
    if (on) state.selected.add(id);
    else state.selected.delete(id);
    row.classList.toggle("selected", on);
    updateWriteControls();
  }

  // The record --------------------------------------------------------------------------------
  async function showRecord(id) {
    const seq = ++state.loads;
    state.record = null;
    $("record-title").textContent = "Record";
    $("record-fields").replaceChildren();
    for (const name of ["record-traceback", "record-envelope", "record-raw"]) $(name).textContent = "";
    $("record-raw-part").hidden = true;
    busy(true);
    setStatus("Loading…");
    try {
      const record = await api(`failed/${encodeURIComponent(id)}`);
      if (seq !== state.loads) return;
      renderRecord(record);
      setStatus("");
      $("record-title").focus();
    } catch (error) {
      if (seq !== state.loads) return;
      if (error.status === 404) setStatus("This record is gone: requeued, deleted or trimmed.", true);
      else failed(error);
    }
    updateWriteControls();
    busy(false);
  }

  function renderRecord(record) {
    state.record = record;
    $("record-title").textContent =
      `${record.task || "Unknown task"}: ${record.exception || record.reason}`;
    const fields = [
      ["Id", record.id, "code"],
      ["Kind", KIND_NAMES[record.kind] || record.kind],
      ["Reason", record.reason],
      ["Queue", record.queue],
      ["Task", record.task, "code"],
      ["Task id", record.task_id, "code"],
      ["Exception", record.exception, "code"],
      ["Message", record.message],
      ["Failed at", timeNode(record.failed_at)],
      ["Retries", record.retries],
      ["Trace", traceLink(record.trace_id, true)],
      ["Span id", record.span_id, "code"],
      ["Worker", record.hostname],
    ];
    $("record-fields").replaceChildren(
      ...fields.flatMap(([name, value, className]) => [
        el("dt", {}, name),
        el("dd", { className }, shown(value)),
      ]),
    );
    $("record-traceback").textContent = record.traceback || "(none)";
    $("record-envelope").textContent = record.envelope
      ? JSON.stringify(record.envelope, null, 2)
      : "(none)";
    if (typeof record.raw === "string") {
      $("record-raw").textContent = record.raw;
      $("record-raw-part").hidden = false;
    }
  }

  // Views -------------------------------------------------------------------------------------
  function render() {
    const id = recordInAddress();
    $("lists").hidden = id !== null;
    $("record").hidden = id === null;
    if (id !== null) showRecord(id);
    else loadLists();
  }

  // Writes ------------------------------------------------------------------------------------
  const writable = () => state.writes === "token";
  const canWrite = () => writable() && token.get() !== "";

  function updateWriteControls() {
    if (!writable()) return;
    const n = state.selected.size;
    const off = !canWrite();
    $("requeue-selected").textContent = n ? `Requeue ${n} selected` : "Requeue selected";
    $("delete-selected").textContent = n ? `Delete ${n} selected` : "Delete selected";
    $("requeue-selected").disabled = $("delete-selected").disabled = off || n === 0;
    $("requeue-filter").disabled = $("delete-filter").disabled = off || state.count === 0;
    $("record-requeue").disabled = $("record-delete").disabled = off || !state.record;
    const boxes = [...$("records").tBodies[0].querySelectorAll("input.select")];
    const page = $("select-page");
    page.checked = boxes.length > 0 && boxes.every((box) => box.checked);
    page.indeterminate = !page.checked && boxes.some((box) => box.checked);
  }

  function describeSelection(selection) {
    if (selection.ids) return `${plural(selection.ids.length, "chosen record")}.`;
    const filter = Object.entries(selection.filter).map(([key, value]) => `${key} = ${value}`);
    return filter.length
      ? `Every record matching ${filter.join(", ")}.`
      : "Every failed record, of both kinds.";
  }

  function countsList(pairs) {
    $("confirm-counts").replaceChildren(
      ...pairs.flatMap(([name, value]) => [el("dt", {}, name), el("dd", {}, value)]),
    );
  }

  const skipped = (answer) =>
    Object.entries(answer.skipped || {}).map(([reason, n]) => [
      `Skipped: ${SKIP_NAMES[reason] || reason}`,
      n,
    ]);

  function confirmState(text, error) {
    const line = $("confirm-state");
    line.textContent = text;
    line.classList.toggle("error", !!error);
  }

  /** The dialog: a dry run's counts first, then the real run on Go, then its result. */
  function openAction(action, selection) {
    const verb = action === "requeue" ? "Requeue" : "Delete";
    state.pending = { action, selection, verb, done: action === "requeue" ? "requeued" : "deleted" };
    $("confirm-title").textContent = `${verb} failed work`;
    $("confirm-what").textContent = describeSelection(selection);
    $("confirm-force-part").hidden = action !== "requeue";
    $("confirm-force").checked = false;
    $("confirm-close").textContent = "Cancel";
    $("confirm-go").classList.toggle("danger", action === "delete");
    $("confirm").showModal();
    dryRun();
  }

  function actionBody(dryRun) {
    const { action, selection } = state.pending;
    const body = { ...selection, dry_run: dryRun };
    if (action === "requeue" && $("confirm-force").checked) body.force = true;
    return body;
  }

  async function dryRun() {
    const pending = state.pending;
    const go = $("confirm-go");
    go.hidden = false;
    go.disabled = true;
    go.textContent = pending.verb;
    countsList([]);
    confirmState("Counting what would change (a dry run)…");
    let answer;
    try {
      answer = await api(`failed/${pending.action}`, actionBody(true));
    } catch (error) {
      if (state.pending === pending) confirmState(explain(error), true);
      return;
    }
    if (state.pending !== pending) return;
    const skips = Object.values(answer.skipped || {}).reduce((a, b) => a + b, 0);
    const would = answer.matched - skips;
    pending.would = would;
    countsList([["Matched", answer.matched], ...skipped(answer), [`To be ${pending.done}`, would]]);
    confirmState(
      would > 0
        ? `Dry run: nothing has changed yet. ${pending.verb} ${plural(would, "record")}?`
        : `Dry run: nothing to ${pending.action}.`,
    );
    go.textContent = `${pending.verb} ${would}`;
    go.disabled = would === 0;
  }

  async function runAction() {
    const pending = state.pending;
    const go = $("confirm-go");
    go.disabled = true;
    $("confirm-force").disabled = true;
    confirmState(`${pending.verb}…`);
    state.changed = true;
    try {
      const answer = await api(`failed/${pending.action}`, actionBody(false));
      countsList([["Matched", answer.matched], [`Done: ${pending.done}`, answer[pending.done]], ...skipped(answer)]);
      confirmState(`Done: ${plural(answer[pending.done], "record")} ${pending.done}.`);
      go.hidden = true;
      $("confirm-close").textContent = "Close";
    } catch (error) {
      confirmState(explain(error), true);
      go.disabled = false;
    } finally {
      $("confirm-force").disabled = false;
    }
  }

  function closedAction() {
    state.pending = null;
    if (!state.changed) return;
    state.changed = false;
    if (recordInAddress() !== null) backToList();
    else render();
  }

  function backToList() {
    history.pushState(null, "", `${location.pathname}${location.search}`);
    render();
  }

  // Access ----------------------------------------------------------------------------------
  function describeMode() {
    let text;
    if (!writable()) {
      text = "Read-only: set OPS_TOKEN on the exporter to requeue or delete from here.";
    } else {
      text = state.reads === "token"
        ? "Reading, requeueing and deleting need the operator token."
        : "Requeueing and deleting need the operator token.";
      if (token.get()) text += " A token is set for this tab.";
    }
    $("mode").textContent = text;
    const needed = writable() || state.reads === "token";
    $("token-form").hidden = !needed;
    $("token-forget").disabled = !token.get();
  }

  function validTraceUrl(url) {
    return typeof url === "string" && /^https?:\/\//i.test(url) && url.includes(PLACEHOLDER)
      ? url
      : null;
  }

  // Start -----------------------------------------------------------------------------------
  function wire() {
    $("filters").addEventListener("submit", (event) => {
      event.preventDefault();
      go(formQuery());
    });
    $("clear").addEventListener("click", () => go(new URLSearchParams()));
    $("older").addEventListener("click", () => {
      const params = currentQuery();
      params.set("cursor", state.next);
      go(params);
    });
    $("newest").addEventListener("click", () => {
      const params = currentQuery();
      params.delete("cursor");
      go(params);
    });
    $("record-back").addEventListener("click", (event) => {
      event.preventDefault();
      backToList();
    });
    $("token-form").addEventListener("submit", (event) => {
      event.preventDefault();
      const value = $("token").value.trim();
      if (!value) return;
      token.set(value);
      $("token").value = "";
      describeMode();
      updateWriteControls();
      setStatus("Token set for this tab.");
      render();
    });
    $("token-forget").addEventListener("click", () => {
      token.forget();
      describeMode();
      updateWriteControls();
      setStatus("Token forgotten.");
      if (state.reads === "token") render(); // what was read with it is not kept on screen
    });
    window.addEventListener("popstate", render);
    if (!writable()) return;
    $("select-page").addEventListener("change", (event) => {
      for (const box of $("records").tBodies[0].querySelectorAll("input.select")) {
        if (box.checked !== event.target.checked) {
          box.checked = event.target.checked;
          box.dispatchEvent(new Event("change"));
        }
      }
    });
    const selected = () => ({ ids: [...state.selected] });
    const matching = () => ({ filter: filterObject(currentQuery()) });
    const thisRecord = () => ({ ids: [state.record.id] });
    $("requeue-selected").addEventListener("click", () => openAction("requeue", selected()));
    $("delete-selected").addEventListener("click", () => openAction("delete", selected()));
    $("requeue-filter").addEventListener("click", () => openAction("requeue", matching()));
    $("delete-filter").addEventListener("click", () => openAction("delete", matching()));
    $("record-requeue").addEventListener("click", () => openAction("requeue", thisRecord()));
    $("record-delete").addEventListener("click", () => openAction("delete", thisRecord()));
    $("confirm-go").addEventListener("click", runAction);
    $("confirm-force").addEventListener("change", dryRun);
    $("confirm-close").addEventListener("click", () => $("confirm").close());
    $("confirm").addEventListener("close", closedAction);
  }

  async function start() {
    try {
      const ops = await api("ops");
      state.writes = ops.writes === "token" ? "token" : "off";
      state.reads = ops.reads === "token" ? "token" : "open";
      state.traceUrl = validTraceUrl(ops.trace_url);
    } catch (error) {
      setStatus(explain(error), true);
      busy(false);
      return;
    }
    if (!writable()) {
      for (const node of document.querySelectorAll("[data-write], #confirm")) node.remove();
    }
    document.body.classList.add(writable() ? "writes" : "read-only");
    wire();
    describeMode();
    if (state.reads === "token" && !token.get()) {
      setStatus("Type the operator token to read the failed work.");
      $("token").focus();
      busy(false);
      return;
    }
    render();
  }

  start();
})();
