// The call example: join a channel with the WebRTC relay, see who is here, call someone (or
// answer), and talk over video while chatting on the call's data channel. The server relays only
// the offer, answer and ICE candidates; video and chat go peer to peer.
//
// The form is pre-filled from the URL: ?channel=lobby&agent=alice&camera=0#key=sk_… (the fragment
// never reaches the server).

const { AgentConnection, WebRtcHelper } = window.Switchboard;

const $ = (id) => document.getElementById(id);
const joinForm = $("join");
let agent;
let rtc;
let me;
let camera; // our MediaStream, when the camera is shared
let call; // the current call
let ringing; // an incoming call not answered yet
let channel; // the call's data channel

prefill();
joinForm.addEventListener("submit", (event) => {
  event.preventDefault();
  join().catch((e) => showError("join-error", e));
});
$("composer").addEventListener("submit", (event) => {
  event.preventDefault();
  sendChat();
});
$("answer").addEventListener("click", () => answer().catch((e) => showError("app-error", e)));
$("decline").addEventListener("click", () => ringing?.hangUp());
$("hangup").addEventListener("click", () => call?.hangUp());
$("leave").addEventListener("click", async () => {
  await rtc?.close();
  await agent?.disconnect();
});

function prefill() {
  const params = new URLSearchParams(location.search);
  const key = new URLSearchParams(location.hash.slice(1)).get("key");
  for (const [field, value] of [["channel", params.get("channel")], ["agent", params.get("agent")], ["key", key]]) {
    if (value) joinForm.elements[field].value = value;
  }
  if (params.get("camera") === "0") joinForm.elements.camera.checked = false;
}

async function join() {
  const form = joinForm.elements;
  me = form.agent.value;
  agent = new AgentConnection();
  agent.onPresence(({ agents }) => renderPresence(agents));
  agent.onConnect(({ reconnected }) => setStatus("connected", reconnected ? "reconnected" : "connected"));
  agent.onDisconnect(({ willReconnect, error }) => {
    if (willReconnect) return setStatus("reconnecting", "reconnecting…");
    setStatus("closed", `left${error ? `: ${error.code}` : ""}`);
    renderPresence([]);
  });
  agent.onError((e) => showError("app-error", e));
  const options = { channelName: form.channel.value, agentName: me, apiKey: form.key.value, enableWebrtcRelay: true };
  if (form.password.value) options.channelPassword = form.password.value;
  $("join-error").hidden = true;
  if (form.camera.checked) camera = await openCamera();
  await agent.connect(options);

  rtc = new WebRtcHelper(agent);
  rtc.onIncomingCall((incoming) => {
    if (call || ringing) return incoming.hangUp("busy");
    ringing = incoming;
    incoming.onEnded(() => {
      if (ringing === incoming) ringing = undefined;
      $("incoming").hidden = true;
    });
    $("caller").textContent = incoming.peer;
    $("incoming").hidden = false;
  });

  joinForm.hidden = true;
  $("app").hidden = false;
  $("title").textContent = `#${options.channelName} · ${me}`;
  document.title = `#${options.channelName} · Switchboard call`;
  renderPresence(await agent.presence());
}

async function openCamera() {
  try {
    const stream = await navigator.mediaDevices.getUserMedia({ video: true, audio: true });
    $("local").srcObject = stream;
    return stream;
  } catch (e) {
    showError("app-error", new Error(`no camera (${e.name}): data-only calls`));
    return undefined;
  }
}

async function callAgent(name) {
  if (call) return;
  const outgoing = await rtc.call(name, { dataChannel: "chat", media: camera });
  follow(outgoing);
  setCallState("calling", `Calling ${name}…`);
}

async function answer() {
  const incoming = ringing;
  ringing = undefined;
  $("incoming").hidden = true;
  follow(incoming);
  setCallState("calling", `Connecting to ${incoming.peer}…`);
  await incoming.answer({ media: camera });
}

/** Shows a call's video and chat until it ends. */
function follow(c) {
  call = c;
  $("remote-name").textContent = c.peer;
  $("hangup").hidden = false;
  c.onRemoteStream((stream) => showRemote(stream));
  for (const stream of c.remoteStreams) showRemote(stream);
  if (c.dataChannel) useChannel(c.dataChannel);
  c.onDataChannel(useChannel);
  c.connected.then(() => setCallState("connected", `In a call with ${c.peer}`), () => undefined);
  c.onEnded(({ reason, remote }) => {
    call = undefined;
    channel = undefined;
    $("remote").srcObject = null;
    $("hangup").hidden = true;
    setComposer(false);
    setCallState("ended", `Call with ${c.peer} ended (${remote ? `${c.peer}: ` : ""}${reason})`);
  });
}

function showRemote(stream) {
  const video = $("remote");
  if (video.srcObject === stream) return;
  video.srcObject = stream;
  // Without a click on this page first, the browser may refuse sound: play muted then.
  video.play().catch(() => {
    video.muted = true;
    return video.play();
  }).catch(() => undefined);
}

function useChannel(dc) {
  channel = dc;
  dc.onopen = () => setComposer(true);
  dc.onclose = () => setComposer(false);
  dc.onmessage = ({ data }) => render(call?.peer ?? "them", JSON.parse(data).text, false);
  if (dc.readyState === "open") setComposer(true);
}

function sendChat() {
  const input = $("text");
  const text = input.value.trim();
  if (!text || channel?.readyState !== "open") return;
  channel.send(JSON.stringify({ text }));
  render(me, text, true);
  input.value = "";
}

function render(from, text, mine) {
  const li = document.createElement("li");
  if (mine) li.classList.add("mine");
  const who = document.createElement("span");
  who.className = "who";
  who.textContent = `${from} · ${new Date().toLocaleTimeString()}`;
  const body = document.createElement("span");
  body.className = "text";
  body.textContent = String(text);
  li.append(who, body);
  $("messages").append(li);
  $("messages").scrollTop = $("messages").scrollHeight;
}

function renderPresence(agents) {
  $("presence").replaceChildren(
    ...agents.map(({ agentName }) => {
      const li = document.createElement("li");
      li.dataset.agent = agentName;
      const name = document.createElement("span");
      name.textContent = agentName;
      li.append(name);
      if (agentName === me) li.classList.add("me");
      else {
        const button = document.createElement("button");
        button.type = "button";
        button.textContent = "Call";
        button.addEventListener("click", () => callAgent(agentName).catch((e) => showError("app-error", e)));
        li.append(button);
      }
      return li;
    }),
  );
}

function setComposer(enabled) {
  for (const control of $("composer").elements) control.disabled = !enabled;
  if (enabled) $("text").focus();
}

function setCallState(state, text) {
  $("call-state").dataset.state = state;
  $("call-state").textContent = text;
}

function setStatus(state, text) {
  $("status").dataset.state = state;
  $("status").textContent = text;
}

function showError(id, error) {
  const box = $(id);
  box.textContent = error.code ? `${error.code}: ${error.message.replace(`${error.code}: `, "")}` : String(error.message ?? error);
  box.hidden = false;
}
