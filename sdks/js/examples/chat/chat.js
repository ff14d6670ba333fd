// The chat example: join a channel, show who is here, load the latest messages, then live ones;
// click a name (or pick it) to send a direct message. The SDK reconnects by itself and resumes
// from the last message shown, so nothing is missed or shown twice across a server restart.
//
// The form is pre-filled from the URL: ?channel=lobby&agent=alice#key=sk_… (the fragment never
// reaches the server).

const { AgentConnection } = window.Switchboard;

const $ = (id) => document.getElementById(id);
const joinForm = $("join");
const shown = new Set(); // message ids on screen: history and live may overlap
let agent;
let me;

prefill();
joinForm.addEventListener("submit", (event) => {
  event.preventDefault();
  join().catch((e) => showError("join-error", e));
});
$("composer").addEventListener("submit", (event) => {
  event.preventDefault();
  send().catch((e) => showError("chat-error", e));
});
$("leave").addEventListener("click", () => agent?.disconnect());

function prefill() {
  const params = new URLSearchParams(location.search);
  const key = new URLSearchParams(location.hash.slice(1)).get("key");
  for (const [field, value] of [["channel", params.get("channel")], ["agent", params.get("agent")], ["key", key]]) {
    if (value) joinForm.elements[field].value = value;
  }
}

async function join() {
  const form = joinForm.elements;
  me = form.agent.value;
  agent = new AgentConnection();
  agent.onMessage(render);
  agent.onPresence(({ agents }) => renderPresence(agents));
  agent.onConnect(({ reconnected }) => setStatus("connected", reconnected ? "reconnected" : "connected"));
  agent.onDisconnect(({ willReconnect, error }) => {
    if (willReconnect) return setStatus("reconnecting", "reconnecting…");
    // For good: this page is no longer in the channel.
    setStatus("closed", `left${error ? `: ${error.code}` : ""}`);
    renderPresence([]);
    for (const control of $("composer").elements) control.disabled = true;
  });
  agent.onError((e) => showError("chat-error", e));
  const options = { channelName: form.channel.value, agentName: me, apiKey: form.key.value };
  if (form.password.value) options.channelPassword = form.password.value;
  $("join-error").hidden = true;
  await agent.connect(options);

  joinForm.hidden = true;
  $("chat").hidden = false;
  $("title").textContent = `#${options.channelName}`;
  document.title = `#${options.channelName} · Switchboard chat`;
  renderPresence(await agent.presence());
  for (const message of await agent.receive({ limit: 50 })) render(message);
  $("text").focus();
}

async function send() {
  const input = $("text");
  const text = input.value.trim();
  if (!text) return;
  const to = $("to").value;
  const message = { type: "chat", data: { text } };
  if (to) message.to = to;
  input.value = "";
  await agent.send(message);
}

function render(message) {
  if (shown.has(message.id)) return;
  shown.add(message.id);
  const li = document.createElement("li");
  li.dataset.offset = message.offset ?? "";
  li.dataset.from = message.from;
  if (message.from === me) li.classList.add("mine");
  if (message.to) li.classList.add("direct");
  const who = document.createElement("span");
  who.className = "who";
  const time = new Date(message.ts).toLocaleTimeString();
  who.textContent = message.to ? `${message.from} → ${message.to} (direct) · ${time}` : `${message.from} · ${time}`;
  const body = document.createElement("span");
  body.className = "text";
  body.textContent = typeof message.data?.text === "string" ? message.data.text : JSON.stringify(message.data);
  li.append(who, body);
  // Keep offset order: a live message may arrive before the history page that precedes it.
  const list = $("messages");
  const after = [...list.children].find((other) => message.offset !== undefined && Number(other.dataset.offset) > message.offset);
  list.insertBefore(li, after ?? null);
  list.scrollTop = list.scrollHeight;
}

function renderPresence(agents) {
  const list = $("presence");
  list.replaceChildren(
    ...agents.map(({ agentName }) => {
      const li = document.createElement("li");
      li.textContent = agentName;
      li.dataset.agent = agentName;
      if (agentName === me) li.classList.add("me");
      else li.addEventListener("click", () => ($("to").value = agentName) && $("text").focus());
      return li;
    }),
  );
  const select = $("to");
  const chosen = select.value;
  select.replaceChildren(new Option("Everyone", ""), ...agents.filter((a) => a.agentName !== me).map((a) => new Option(a.agentName, a.agentName)));
  select.value = agents.some((a) => a.agentName === chosen) ? chosen : "";
}

function setStatus(state, text) {
  const status = $("status");
  status.dataset.state = state;
  status.textContent = text;
}

function showError(id, error) {
  const box = $(id);
  box.textContent = error.code ? `${error.code}: ${error.message.replace(`${error.code}: `, "")}` : String(error);
  box.hidden = false;
}
