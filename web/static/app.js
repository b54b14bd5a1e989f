// RepSys web: the little script the pages need, nothing the pages cannot live without.
// 1. A block with data-poll="URL" is refreshed from URL every 2 s while it keeps that
//    attribute (the ticket status, until the ticket is filed or failed).
// 2. A block with data-events="URL" data-fragment="URL" follows server-sent events and
//    reloads its fragment on each one (the report queue, live).
// 3. A submit button with data-sending="text" is disabled after the first tap and says
//    so (the server files one ticket per form anyway: its one-time token).
// 4. A textarea with data-max counts its characters in the hint it is described by
//    ("123 of 4,000 characters", red past the limit: a paste is never cut silently).
// 5. The header's Menu button opens and closes the navigation on narrow screens
//    (without this script the navigation simply stays open).
"use strict";

function swap(el, html) {
  const tpl = document.createElement("template");
  tpl.innerHTML = html.trim();
  const fresh = tpl.content.firstElementChild;
  if (fresh) {
    el.replaceWith(fresh);
    return fresh;
  }
  return el;
}

function poll(el) {
  const url = el.getAttribute("data-poll");
  if (!url) return;
  setTimeout(async () => {
    try {
      const resp = await fetch(url, { credentials: "same-origin", headers: { "Accept": "text/html" } });
      if (resp.ok) el = swap(el, await resp.text());
    } catch (e) { /* network blip: try again next round */ }
    poll(el);
  }, 2000);
}

function follow(el) {
  const events = el.getAttribute("data-events");
  const fragment = el.getAttribute("data-fragment");
  const badge = document.getElementById("live-state");
  const source = new EventSource(events);
  let busy = false;
  let again = false;
  async function reload() {
    if (busy) { again = true; return; }
    busy = true;
    try {
      const resp = await fetch(fragment, { credentials: "same-origin" });
      if (resp.ok) {
        const target = document.getElementById(el.id);
        if (target) target.innerHTML = await resp.text();
      }
    } finally {
      busy = false;
      if (again) { again = false; reload(); }
    }
  }
  source.onopen = () => { if (badge) { badge.className = "live on"; badge.textContent = "live"; } reload(); };
  source.onerror = () => { if (badge) { badge.className = "live off"; badge.textContent = "reconnecting"; } };
  source.onmessage = () => reload();
}

function guard(button) {
  const form = button.form;
  if (!form) return;
  form.addEventListener("submit", (event) => {
    if (button.disabled) { event.preventDefault(); return; }
    // Disabled after this event: a button disabled now would not be sent with the form.
    setTimeout(() => {
      button.disabled = true;
      button.textContent = button.getAttribute("data-sending");
    }, 0);
  });
}

function counter(area) {
  const max = Number(area.getAttribute("data-max"));
  const hint = document.getElementById(area.id + "-count");
  if (!hint || !max) return;
  const fmt = new Intl.NumberFormat();
  const update = () => {
    const n = area.value.length;
    hint.textContent = n > max
      ? `${fmt.format(n)} of ${fmt.format(max)} characters: ${fmt.format(n - max)} too many`
      : `${fmt.format(n)} of ${fmt.format(max)} characters`;
    hint.classList.toggle("over", n > max);
  };
  area.addEventListener("input", update);
  update();
}

function menu(button) {
  const top = button.closest(".top");
  button.addEventListener("click", () => {
    const open = top.classList.toggle("open");
    button.setAttribute("aria-expanded", open ? "true" : "false");
  });
}

// 6. A block with data-refresh="N" reloads the page (or goes to data-next, the TV board's
//    next page) every N seconds, until its Pause button is pressed; the pause holds for
//    the tab's session (sessionStorage), so a supervisor reading a tile keeps it still.
function refresh(el) {
  const seconds = Number(el.getAttribute("data-refresh"));
  const next = el.getAttribute("data-next") || "";
  const button = el.querySelector("[data-pause]");
  const text = el.querySelector(".refresh-text");
  let timer = null;
  const paused = () => sessionStorage.getItem("repsys-paused") === "1";
  const schedule = () => {
    if (timer) clearTimeout(timer);
    timer = null;
    if (!seconds || paused()) return;
    timer = setTimeout(() => { if (next) location.assign(next); else location.reload(); }, seconds * 1000);
  };
  const show = () => {
    const p = paused();
    if (button) { button.textContent = p ? "Resume" : "Pause"; button.setAttribute("aria-pressed", p ? "true" : "false"); }
    if (text) text.textContent = p ? "Updates paused" : `Updates every ${seconds} s`;
  };
  if (button) button.addEventListener("click", () => {
    sessionStorage.setItem("repsys-paused", paused() ? "0" : "1");
    show();
    schedule();
  });
  show();
  schedule();
}

document.documentElement.classList.add("js");
document.addEventListener("DOMContentLoaded", () => {
  document.querySelectorAll("textarea[data-max]").forEach(counter);
  document.querySelectorAll(".menu-toggle").forEach(menu);
  document.querySelectorAll("[data-refresh]").forEach(refresh);
  document.querySelectorAll("button[data-sending]").forEach(guard);
  document.querySelectorAll("[data-poll]").forEach(poll);
  document.querySelectorAll("[data-events]").forEach(follow);
});
