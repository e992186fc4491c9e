// devicecloud console: local times, and the live table of a group page.
// Everything a device sent is put on the page with textContent or as a form value, never as markup.
"use strict";

(function () {
  const IMAGE_PATH = /^\/files\/[0-9a-f]{32}\/[^/]+\.(png|jpe?g|gif|bmp|webp)$/i;

  function showTime(element, ms) {
    element.dataset.ms = String(ms || 0);
    if (!ms) {
      element.textContent = "never";
      return;
    }
    const date = new Date(ms);
    element.dateTime = date.toISOString();
    element.textContent = date.toLocaleString();
  }

  function localTimes(root) {
    for (const element of root.querySelectorAll("time[data-ms]")) {
      const ms = Number(element.dataset.ms);
      if (ms > 0) showTime(element, ms);
    }
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
    const scheme = location.protocol === "https:" ? "wss://" : "ws://";
    const address = scheme + location.host + "/console/live/" + encodeURIComponent(token) +
      location.search;  // ?page=N: the live table is that page's
    let delay = 1000;
    let released = false;
    let leaving = false;  // a form of this page was sent: its answer decides where to go
    document.addEventListener("submit", () => { leaving = true; });

    function setState(name, text) {
      state.dataset.state = name;
      state.textContent = text;
    }

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

    function connect() {
      const socket = new WebSocket(address);
      socket.onmessage = (event) => {
        const message = JSON.parse(event.data);
        if (message.type === "snapshot") {
          snapshot(message.records);
          status(message.status);
          delay = 1000;
          setState("live", "live");
        } else if (message.type === "field") {
          if (message.change === "deleted") remove(message.record.name);
          else put(message.record);
        } else if (message.type === "status") {
          status(message.status);
        } else if (message.type === "released") {
          released = true;
          setState("released", "released");
          if (!leaving) location.assign("/console/devices");
        }
      };
      socket.onclose = () => {
        if (released) return;
        setState("off", "reconnecting…");
        setTimeout(connect, delay);
        delay = Math.min(delay * 2, 30000);
      };
    }

    setState("connecting", "connecting…");
    connect();
  }

  document.addEventListener("DOMContentLoaded", () => {
    localTimes(document);
    const token = document.body.dataset.device;
    if (token) liveGroup(token);
  });
})();
