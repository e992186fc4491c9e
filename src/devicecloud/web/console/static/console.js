// devicecloud console: local and relative times, confirm dialogs, the live device list, the
// live table of a device's page with its switches and steppers, and the live history chart.
// Everything a device sent is put on the page with textContent or as a form value, never as markup.
"use strict";

(function () {
  const IMAGE_PATH = /^\/files\/[0-9a-f]{32}\/[^/]+\.(png|jpe?g|gif|bmp|webp)$/i;
  const ZONE = Intl.DateTimeFormat().resolvedOptions().timeZone || "local time";
  const scheme = location.protocol === "https:" ? "wss://" : "ws://";
  document.documentElement.classList.add("js");  // what needs this script shows only with it

  function ago(ms) {
    const seconds = Math.round((Date.now() - ms) / 1000);
    if (seconds < 45) return "just now";
    const minutes = Math.round(seconds / 60);
    if (minutes < 60) return minutes + " min ago";
    const hours = Math.round(minutes / 60);
    if (hours < 24) return hours + " h ago";
    const days = Math.round(hours / 24);
    return days === 1 ? "1 day ago" : days + " days ago";
  }

  // A <time>: local time, or for class "ago" how long ago, with the local time and zone as title.
  function showTime(element, ms) {
    element.dataset.ms = String(ms || 0);
    if (!ms) {
      element.textContent = "never";
      element.removeAttribute("title");
      return;
    }
    const date = new Date(ms);
    element.dateTime = date.toISOString();
    const local = date.toLocaleString() + " (" + ZONE + ")";
    if (element.classList.contains("ago")) {
      element.textContent = ago(ms);
      element.title = local;
    } else {
      element.textContent = date.toLocaleString();
      element.title = ZONE;
    }
  }

  function localTimes(root) {
    for (const element of root.querySelectorAll("time[data-ms], .chart-time[data-ms]")) {
      const ms = Number(element.dataset.ms);
      if (ms > 0) showTime(element, ms);
    }
  }

  // A WebSocket to the console's live feed that reconnects with a growing delay; `state` shows
  // how it is. Each message goes to `handle`; handle returns false to stop for good.
  function liveFeed(path, state, handle) {
    const address = scheme + location.host + path;
    let delay = 1000;
    let stopped = false;

    function setState(name, text) {
      if (!state) return;
      state.dataset.state = name;
      state.textContent = text;
    }

    function connect() {
      const socket = new WebSocket(address);
      socket.onopen = () => { delay = 1000; setState("live", "live"); };
      socket.onmessage = (event) => {
        if (handle(JSON.parse(event.data), setState) === false) stopped = true;
      };
      socket.onclose = () => {
        if (stopped) return;
        setState("off", "reconnecting…");
        setTimeout(connect, delay);
        delay = Math.min(delay * 2, 30000);
      };
    }

    setState("connecting", "connecting…");
    connect();
  }

  // Fetch this page again (at most once a second) and hand the fresh document to `apply`.
  function refresher(apply) {
    let timer = null;
    return function () {
      if (timer) return;
      timer = setTimeout(async () => {
        timer = null;
        try {
          const answer = await fetch(location.href, { credentials: "same-origin" });
          if (!answer.ok) return;
          apply(new DOMParser().parseFromString(await answer.text(), "text/html"));
        } catch (error) {
          // the next change tries again
        }
      }, 1000);
    };
  }

  function swap(fresh, selector) {
    const now = document.querySelector(selector);
    const next = fresh.querySelector(selector);
    if (!now || !next) return;
    const copy = document.importNode(next, true);
    now.replaceWith(copy);
    localTimes(copy);
  }

  function shown(value) {
    return typeof value === "string" ? value : JSON.stringify(value);
  }

  function kindOf(record) {
    if (record.dataType === "file") return "file";
    if (record.dataType === "number" && typeof record.value === "number") return "number";
    if (record.dataType === "string" && typeof record.value === "string") return "text";
    return "json";
  }

  // The same rule as the server's: only image files stored here, shown from this origin.
  function previewPath(record) {
    if (record.dataType !== "file" || typeof record.value !== "string") return "";
    let url;
    try {
      url = new URL(record.value);
    } catch (error) {
      return "";
    }
    if (url.protocol !== "http:" && url.protocol !== "https:") return "";
    let path;
    try {
      path = decodeURI(url.pathname);
    } catch (error) {
      return "";
    }
    return IMAGE_PATH.test(path) ? url.pathname : "";
  }

  function liveGroup(token) {
    const body = document.querySelector("#fields tbody");
    const template = document.getElementById("field-row");
    const empty = document.getElementById("no-fields");
    const state = document.getElementById("live-state");
    let leaving = false;  // a form of this page was sent: its answer decides where to go
    document.addEventListener("submit", (event) => {
      if (!event.target.classList.contains("f-quick")) leaving = true;
    });
    const sparklines = refresher((fresh) => {
      for (const row of Array.from(body.rows)) {
        const next = Array.from(fresh.querySelectorAll("#fields tbody tr"))
          .find((other) => other.dataset.name === row.dataset.name);
        const spark = row.querySelector(".f-spark");
        if (next && spark) spark.replaceWith(document.importNode(next.querySelector(".f-spark"), true));
      }
    });

    function rowOf(name) {
      for (const row of body.rows) if (row.dataset.name === name) return row;
      return null;
    }

    function fill(row, record) {
      row.dataset.name = record.name;
      row.querySelector(".f-name").textContent = record.name;
      row.querySelector(".f-type").textContent = record.dataType;
      row.querySelector(".f-value").textContent = shown(record.value);
      showTime(row.querySelector(".f-time"), record.updateTime);
      for (const input of row.querySelectorAll("input[name=name]")) input.value = record.name;
      const historyLink = row.querySelector(".f-history");
      historyLink.href = historyLink.pathname + "?name=" + encodeURIComponent(record.name);
      const edit = row.querySelector(".f-edit");
      if (!edit.open) {
        edit.querySelector("textarea[name=value]").value = shown(record.value);
        edit.querySelector("select[name=type]").value = kindOf(record);
      }
      quickControls(row, record);
      const path = previewPath(record);
      let image = row.querySelector(".f-preview");
      if (path) {
        if (!image) {
          image = document.createElement("img");
          image.className = "f-preview";
          image.alt = "";
          row.querySelector(".f-cell").prepend(image);
        }
        if (image.getAttribute("src") !== path) image.src = path;
      } else if (image) {
        image.remove();
      }
    }

    function quickControls(row, record) {
      const isSwitch = record.dataType === "number" && typeof record.value === "boolean";
      const toggle = row.querySelector(".f-switch");
      toggle.hidden = !isSwitch;
      if (isSwitch) {
        toggle.querySelector("input[name=value]").value = record.value ? "false" : "true";
        const button = toggle.querySelector("button.switch");
        button.setAttribute("aria-checked", record.value ? "true" : "false");
        button.setAttribute("aria-label", record.name);
        button.firstElementChild.textContent = record.value ? "Turn off" : "Turn on";
      }
      const stepper = row.querySelector(".f-stepper");
      stepper.hidden = kindOf(record) !== "number";
      const number = stepper.querySelector("input[name=value]");
      if (!stepper.hidden && document.activeElement !== number) number.value = String(record.value);
      number.setAttribute("aria-label", "New value of " + record.name);
    }

    function put(record) {
      let row = rowOf(record.name);
      if (!row) {
        row = template.content.firstElementChild.cloneNode(true);
        body.appendChild(row);
      }
      fill(row, record);
      empty.hidden = true;
    }

    function remove(name) {
      const row = rowOf(name);
      if (row) row.remove();
      empty.hidden = body.rows.length > 0;
    }

    function snapshot(records) {
      const names = new Set(records.map((record) => record.name));
      for (const row of Array.from(body.rows)) {
        if (!names.has(row.dataset.name)) row.remove();
      }
      records.forEach(put);
      empty.hidden = body.rows.length > 0;
    }

    function status(current) {
      const online = document.getElementById("st-online");
      online.textContent = current.online ? "online" : "offline";
      online.className = "badge " + (current.online ? "on" : "off");
      document.getElementById("st-transport").textContent =
        current.transports.length ? current.transports.join(", ") : "none";
      showTime(document.getElementById("st-seen"), current.lastSeen);
    }

    liveFeed("/console/live/" + encodeURIComponent(token) + location.search, state,
      (message, setState) => {  // ?page=N: the live table is that page's
        if (message.type === "snapshot") {
          snapshot(message.records);
          status(message.status);
        } else if (message.type === "field") {
          if (message.change === "deleted") remove(message.record.name);
          else put(message.record);
          if (kindOf(message.record) === "number") sparklines();
        } else if (message.type === "status") {
          status(message.status);
        } else if (message.type === "released") {
          setState("released", "released");
          if (!leaving) location.assign("/console/devices");
          return false;
        }
        return true;
      });
  }

  // A switch, a stepper, a field's Edit form and the Add form send themselves and the page
  // stays; the live feed shows the result. Where that cannot be done (an expired form, a lost
  // session, an upload over the limit) the form is sent as usual.
  function quickEdits() {
    const note = document.getElementById("quick-note");
    document.addEventListener("click", (event) => {
      const step = event.target.closest(".f-stepper .step");
      if (!step) return;
      const form = step.form;
      const input = form.querySelector("input[name=value]");
      const text = input.value.trim() || "0";
      const places = Math.min((text.split(".")[1] || "").length, 6);
      const next = Number(text) + Number(step.dataset.step) / Math.pow(10, places);
      input.value = next.toFixed(places);
      form.requestSubmit();
    });
    document.addEventListener("submit", async (event) => {
      const form = event.target;
      if (!form.classList.contains("f-quick")) return;
      event.preventDefault();
      let answer;
      try {
        answer = await fetch(form.action, {
          method: "POST", body: new FormData(form), credentials: "same-origin",
          headers: { Accept: "application/json" },
        });
      } catch (error) {
        form.submit();
        return;
      }
      const type = answer.headers.get("content-type") || "";
      if (!type.startsWith("application/json")) {
        form.submit();
        return;
      }
      const reply = await answer.json();
      note.textContent = reply.message || reply.error || "";
      note.className = "note" + (reply.error ? " error" : "");
      note.hidden = false;
      if (reply.error) return;
      const opened = form.closest("details.f-edit");
      if (opened) opened.open = false;
      if (form.id === "add-field") form.reset();
    });
  }

  // Each destructive form sits in a <details> that opens to its question; with this script the
  // question is asked in a dialog instead, and the form is sent only on "yes".
  function confirmDialogs() {
    const dialog = document.createElement("dialog");
    dialog.id = "confirm-dialog";
    dialog.innerHTML = '<form method="dialog"><p class="confirm-what"></p>' +
      '<p class="confirm-question"></p><div class="actions">' +
      '<button value="no" class="primary">Cancel</button> ' +
      '<button value="yes" class="danger" id="confirm-yes"></button></div></form>';
    document.body.appendChild(dialog);
    let pending = null;
    document.addEventListener("click", (event) => {
      const summary = event.target.closest("details.confirm > summary");
      if (!summary) return;
      event.preventDefault();
      pending = summary.parentElement.querySelector("form");
      const named = pending.querySelector("input[name=name]");
      dialog.querySelector(".confirm-what").textContent = named ? named.value : "";
      dialog.querySelector(".confirm-question").textContent =
        pending.querySelector(".confirm-question").textContent;
      dialog.querySelector("#confirm-yes").textContent =
        pending.querySelector("button.danger").textContent;
      dialog.returnValue = "";
      dialog.showModal();
    });
    dialog.addEventListener("close", () => {
      if (dialog.returnValue === "yes" && pending) pending.requestSubmit();
      pending = null;
    });
  }

  // The device list: search by name or MAC, sort, and each device's status, last values and
  // last-seen time kept live.
  function liveFleet() {
    const body = document.querySelector("#devices tbody");
    if (!body) return;
    const search = document.getElementById("device-search");
    const sort = document.getElementById("device-sort");
    const none = document.getElementById("no-match");
    document.getElementById("list-tools").hidden = false;
    const compact = (text) => text.toLowerCase().replace(/[\s:.-]/g, "");
    const name = (row) => row.dataset.label.toLowerCase();
    const seen = (row) => Number(row.querySelector(".d-seen").dataset.ms);
    const orders = {
      name: (a, b) => name(a).localeCompare(name(b)),
      seen: (a, b) => seen(b) - seen(a) || orders.name(a, b),
      status: (a, b) => Number(b.dataset.online) - Number(a.dataset.online) || orders.name(a, b),
    };

    function arrange() {
      const wanted = compact(search.value);
      let shownRows = 0;
      const rows = Array.from(body.rows).sort(orders[sort.value] || orders.name);
      for (const row of rows) {
        row.hidden = Boolean(wanted) && !compact(row.dataset.label + " " + row.dataset.mac + " " + (row.dataset.tags || ""))
          .includes(wanted);
        if (!row.hidden) shownRows += 1;
        body.appendChild(row);
      }
      none.hidden = shownRows > 0;
    }

    function rowOf(token) {
      for (const row of body.rows) if (row.dataset.token === token) return row;
      return null;
    }

    function status(row, current) {
      const badge = row.querySelector(".d-status");
      badge.textContent = current.online ? "online" : "offline";
      badge.className = "badge d-status " + (current.online ? "on" : "off");
      row.dataset.online = current.online ? "1" : "0";
      showTime(row.querySelector(".d-seen"), current.lastSeen);
    }

    function value(row, field) {
      const list = row.querySelector(".d-values");
      let item = Array.from(list.children).find((li) => li.dataset.field === field.record.name);
      if (field.change === "deleted") {
        if (item) item.remove();
        return;
      }
      if (!item) {
        item = document.createElement("li");
        item.dataset.field = field.record.name;
        item.innerHTML = '<span class="d-field"></span> <span class="d-value"></span>';
        item.firstElementChild.textContent = field.record.name;
      }
      let text = shown(field.record.value);
      if (text.length > 40) text = text.slice(0, 39) + "…";
      item.lastElementChild.textContent = text;
      list.prepend(item);
      while (list.children.length > 3) list.lastElementChild.remove();
      const placeholder = row.querySelector(".d-none");
      if (placeholder) placeholder.remove();
    }

    search.addEventListener("input", arrange);
    sort.addEventListener("change", arrange);
    setInterval(() => localTimes(body), 15000);
    liveFeed("/console/live", document.getElementById("list-live"), (message) => {
      if (message.type === "devices") {
        for (const row of Array.from(body.rows)) {
          const current = message.devices[row.dataset.token];
          if (current) status(row, current);
          else row.remove();
        }
      } else if (message.type === "device") {
        const row = rowOf(message.token);
        if (!row) return true;
        if (message.status.lastSeen !== undefined) status(row, message.status);
        if (message.field) value(row, message.field);
      } else if (message.type === "gone") {
        const row = rowOf(message.token);
        if (row) row.remove();
      }
      arrange();
      return true;
    });
    arrange();
  }

  // A field's history: a new value of the field redraws the chart and the first page's table.
  function liveHistory(token, name) {
    const redraw = refresher((fresh) => {
      swap(fresh, "#chart-card");
      swap(fresh, "#history-card");
    });
    liveFeed("/console/live/" + encodeURIComponent(token), null, (message) => {
      if (message.type === "released") {
        location.assign("/console/devices");
        return false;
      }
      if (message.type === "field" && message.record.name === name) redraw();
      return true;
    });
  }

  document.addEventListener("DOMContentLoaded", () => {
    localTimes(document);
    confirmDialogs();
    const data = document.body.dataset;
    if (data.fleet !== undefined) liveFleet();
    else if (data.history !== undefined) {
      if (data.page === "1") liveHistory(data.device, data.history);
    } else if (data.device) {
      quickEdits();
      liveGroup(data.device);
    }
  });
})();
