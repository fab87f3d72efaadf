// SPAL annotation station: fetch the next support pair, show it, send the answer. No framework, no build step.
"use strict";

(() => {
  const token = document.querySelector('meta[name="spal-token"]').content;
  const NAME_KEY = "spal.annotator";
  const POLL_MS = 1500;
  const $ = (id) => document.getElementById(id);

  let current = null; // the pair on screen, as /api/next returned it
  let busy = false; // a request of this page is in flight: ignore further keys until it settles
  let timer = null;

  const annotator = () => $("annotator").value.trim();

  function setState(state) {
    // Exposed for people reading the DOM and for the browser test.
    document.body.dataset.state = state;
  }

  function detailText(data) {
    if (typeof data.detail === "string") return data.detail;
    if (Array.isArray(data.detail)) return data.detail.map((d) => d.msg).join("; ");
    return "";
  }

  async function api(path, body) {
    const init = { headers: { "X-SPAL-Token": token } };
    if (body !== undefined) {
      init.method = "POST";
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    const response = await fetch(path, init);
    let data = {};
    try {
      data = await response.json();
    } catch (_) {
      data = {};
    }
    if (!response.ok) {
      throw new Error(detailText(data) || `${response.status} ${response.statusText}`);
    }
    return data;
  }

  function notice(text, kind) {
    const el = $("notice");
    el.textContent = text || "";
    el.className = kind || "info";
    el.hidden = !text;
  }

  function showProgress(p) {
    const settled = p.answered + p.skipped + p.known;
    const percent = p.total ? Math.round((100 * settled) / p.total) : 100;
    $("bar-fill").style.width = `${percent}%`;
    document.querySelector(".bar").setAttribute("aria-valuenow", String(percent));
    $("progress-text").textContent =
      `Epoch ${p.epoch}: ${p.answered} answered, ${p.skipped} skipped, ${p.known} known by propagation, ` +
      `${p.pending} pending of ${p.total} · budget: ${p.budget_spent} spent this epoch, ` +
      `${p.budget_remaining} of ${p.budget_total} left`;
  }

  function showWaiting(text) {
    current = null;
    $("question").hidden = true;
    $("waiting").hidden = false;
    $("waiting-text").textContent = text;
    delete document.body.dataset.pairId;
    setState("waiting");
  }

  function imageUrl(path) {
    return `${path}?token=${encodeURIComponent(token)}`;
  }

  async function showPair(pair) {
    // Keys act on `current`: set it only once the new crops are decoded, so nobody answers a pair while
    // still looking at the previous one.
    current = null;
    setState("loading");
    const images = [$("img-a"), $("img-b")];
    images[0].src = imageUrl(pair.images.a);
    images[1].src = imageUrl(pair.images.b);
    try {
      await Promise.all(images.map((img) => img.decode()));
    } catch (_) {
      notice("An image of this pair could not be loaded; skip it with S if it stays blank.", "error");
    }
    $("waiting").hidden = true;
    $("question").hidden = false;
    $("number").textContent = `Question ${pair.number} of epoch ${pair.epoch}`;
    const kind = $("kind");
    kind.textContent = pair.kind === "positive" ? "uncertain positive" : "uncertain negative";
    kind.className = `kind ${pair.kind}`;
    $("reason").textContent = pair.reason;
    $("cam-a").textContent = `camera c${pair.camids[0] + 1}`;
    $("cam-b").textContent = `camera c${pair.camids[1] + 1}`;
    document.body.dataset.pairId = pair.pair_id;
    current = pair;
    setState("question");
  }

  async function loadNext() {
    clearTimeout(timer);
    const name = annotator();
    if (!name) {
      showWaiting("Enter your name above to start answering.");
      $("annotator").focus();
      return;
    }
    try {
      const data = await api(`/api/next?annotator=${encodeURIComponent(name)}`);
      if (data.progress) showProgress(data.progress);
      if (data.done) {
        showWaiting(data.message || "No question right now.");
        timer = setTimeout(loadNext, POLL_MS);
      } else {
        await showPair(data);
      }
    } catch (error) {
      notice(error.message, "error");
      timer = setTimeout(loadNext, 2 * POLL_MS);
    }
  }

  async function act(path, body) {
    if (busy) return null;
    if (!annotator()) {
      notice("Enter your name first: every answer is logged with it.", "error");
      $("annotator").focus();
      return null;
    }
    busy = true;
    setState("busy");
    try {
      return await api(path, body);
    } catch (error) {
      notice(error.message, "error");
      return null;
    } finally {
      busy = false;
    }
  }

  async function answer(same) {
    if (!current) return;
    const data = await act("/api/answer", { pair_id: current.pair_id, same, annotator: annotator() });
    if (data) notice(data.message, data.contradiction ? "warning" : "info");
    await loadNext();
  }

  async function skip() {
    if (!current) return;
    const data = await act("/api/skip", { pair_id: current.pair_id, annotator: annotator() });
    if (data) notice("Skipped: it is not asked again this epoch and costs nothing.", "info");
    await loadNext();
  }

  async function undo() {
    const data = await act("/api/undo", { annotator: annotator() });
    if (data) {
      const what = data.undone.event === "skip" ? "skip" : `answer (${data.undone.same ? "same" : "different"})`;
      notice(`Undone: your last ${what}. The question is shown again.`, "info");
    }
    await loadNext();
  }

  const keys = { y: () => answer(true), n: () => answer(false), s: skip, u: undo };

  document.addEventListener("keydown", (event) => {
    if (event.ctrlKey || event.metaKey || event.altKey || event.repeat) return;
    if (event.target instanceof HTMLInputElement) return; // typing the name
    const handler = keys[event.key.toLowerCase()];
    if (handler) {
      event.preventDefault();
      handler();
    }
  });

  $("btn-same").addEventListener("click", () => answer(true));
  $("btn-diff").addEventListener("click", () => answer(false));
  $("btn-skip").addEventListener("click", skip);
  $("btn-undo").addEventListener("click", undo);

  const nameField = $("annotator");
  nameField.value = localStorage.getItem(NAME_KEY) || "";
  nameField.addEventListener("change", () => {
    localStorage.setItem(NAME_KEY, annotator());
    loadNext();
  });
  nameField.addEventListener("keydown", (event) => {
    if (event.key === "Enter") nameField.blur();
  });

  loadNext();
})();
