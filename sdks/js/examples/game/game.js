// The air-hockey example: two pages of one room play on a shared table, anyone else watches.
//
// - Seats are claimed with a compare-and-set in channel storage: `seat/left` written with
//   `version: 0` succeeds only if nobody holds it, otherwise `seat/right`; a seat whose holder has
//   left the channel can be taken over at its current version.
// - Each player sends its paddle as an ephemeral message at most 60 times a second, paced by
//   requestAnimationFrame, with `noReply` (nothing is stored, nothing waits for an answer).
// - The left player is authoritative: it runs the puck's physics and sends the puck the same way.
// - The score lives in channel storage (`score`), written by the left player with a
//   compare-and-set on each goal, so a page that joins or reloads mid-game shows it at once, and
//   `storageEvents` push every change to every page.
//
// The form is pre-filled from the URL, and the game starts by itself when both are there:
// ?room=rink#key=sk_… (the fragment never reaches the server).

const { AgentConnection } = window.Switchboard;

const W = 960; // the table, in table units; the canvas is scaled to fit the page
const H = 540;
const GOAL = 180; // the height of each goal mouth
const PADDLE_R = 34;
const PUCK_R = 20;
const MAX_SPEED = 1500; // table units per second
const DRAG = 0.7; // the fraction of its speed the puck keeps after one second
const SEND_MS = 1000 / 60;
const COLORS = { left: "#e5484d", right: "#3e7bfa" };

const $ = (id) => document.getElementById(id);
const joinForm = $("join");
const canvas = $("rink");
const ctx = canvas.getContext("2d");

/** Everything on the table, exposed for the browser tests. */
const game = (window.game = {
  room: "",
  me: "",
  ready: false, // joined, seated and showing the table
  role: "spectator", // "left", "right" or "spectator"
  seats: { left: undefined, right: undefined }, // agent names, from storage
  here: new Set(), // agent names present in the channel
  paddles: { left: paddleAt(120), right: paddleAt(W - 120) },
  puck: { x: W / 2, y: H / 2, vx: 0, vy: 0 },
  score: { left: 0, right: 0 },
  scoreVersion: 0, // the version of the `score` entry shown (0: none yet)
  sent: 0, // ephemeral messages sent
  received: { paddle: 0, puck: 0 }, // ephemeral messages received
});
let agent;
let lastFrame = 0;
let lastSend = 0;

prefill();
joinForm.addEventListener("submit", (event) => {
  event.preventDefault();
  join().catch((e) => showError("join-error", e));
});
$("reset").addEventListener("click", () => setScore(() => ({ left: 0, right: 0 })).catch((e) => showError("game-error", e)));
canvas.addEventListener("pointermove", movePaddle);
canvas.addEventListener("pointerdown", movePaddle);

function prefill() {
  const room = new URLSearchParams(location.search).get("room");
  const key = new URLSearchParams(location.hash.slice(1)).get("key");
  if (room) joinForm.elements.room.value = room;
  if (key) joinForm.elements.key.value = key;
  if (room && key) join().catch((e) => showError("join-error", e));
}

async function join() {
  const form = joinForm.elements;
  game.room = form.room.value;
  $("join-error").hidden = true;
  agent = new AgentConnection();
  agent.onMessage(receive);
  agent.onStorageChange(({ key, op, version, value }) => stored(key, op === "put" ? value : undefined, version, true));
  agent.onPresence(({ agents, left }) => {
    game.here = new Set(agents.map((a) => a.agentName));
    // A player left: a spectator may take the free seat.
    if (game.role === "spectator" && left.some((name) => Object.values(game.seats).includes(name))) {
      takeSeat().catch((e) => showError("game-error", e));
    }
  });
  agent.onConnect(({ reconnected }) => setStatus("connected", reconnected ? "reconnected" : "connected"));
  agent.onDisconnect(({ willReconnect, error }) => {
    if (willReconnect) return setStatus("reconnecting", "reconnecting…");
    setStatus("closed", `left${error ? `: ${error.code}` : ""}`);
  });
  agent.onError((e) => showError("game-error", e));
  await connect(form.key.value);

  // Read the score and the seats before showing the table, so a page joining mid-game never
  // shows 0 : 0 first.
  game.here = new Set((await agent.presence()).map((a) => a.agentName));
  const [score, seats] = await Promise.all([
    agent.storage.get("score").catch((e) => (e.code === "not_found" ? undefined : Promise.reject(e))),
    agent.storage.list({ prefix: "seat/" }),
  ]);
  if (score) stored("score", score.value, score.version);
  for (const seat of seats.entries) stored(seat.key, seat.value, seat.version);
  await takeSeat();
  joinForm.hidden = true;
  $("game").hidden = false;
  $("title").textContent = `#${game.room}`;
  document.title = `#${game.room} · Switchboard air hockey`;
  game.ready = true;
  requestAnimationFrame(frame);
}

/** Joins the room's channel under the name this tab had before a reload (to keep its seat). */
async function connect(apiKey) {
  const remembered = `switchboard-game/${game.room}`;
  game.me = sessionStorage.getItem(remembered) || `player-${Math.random().toString(36).slice(2, 8)}`;
  const options = { channelName: `game-${game.room}`, agentName: game.me, apiKey, storageEvents: true, echo: false };
  try {
    await agent.connect(options);
  } catch (e) {
    if (e.code !== "agent_name_taken") throw e;
    // The session before the reload is still there: play under a new name.
    game.me = options.agentName = `player-${Math.random().toString(36).slice(2, 8)}`;
    await agent.connect(options);
  }
  sessionStorage.setItem(remembered, game.me);
}

/** Claims the left seat, else the right one, with a compare-and-set; else watches. */
async function takeSeat() {
  for (const side of ["left", "right"]) {
    if (game.seats[side] === game.me) return seated(side);
  }
  for (const side of ["left", "right"]) {
    const key = `seat/${side}`;
    let current;
    try {
      current = await agent.storage.get(key);
    } catch (e) {
      if (e.code !== "not_found") throw e;
    }
    if (current && current.value !== game.me && game.here.has(current.value)) continue; // taken
    try {
      // version 0: only if nobody ever sat here; else only if it is still the absent holder's.
      await agent.storage.put(key, game.me, { version: current?.version ?? 0 });
      game.seats[side] = game.me;
      return seated(side);
    } catch (e) {
      if (e.code !== "version_conflict") throw e; // another page was quicker: try the next seat
    }
  }
  return seated("spectator");
}

function seated(role) {
  game.role = role;
  const badge = $("role");
  badge.dataset.role = role;
  badge.textContent = role === "spectator" ? "watching" : `you are ${role === "left" ? "red (left)" : "blue (right)"}`;
  $("reset").hidden = role === "spectator";
  $("hint").textContent = role === "spectator" ? "Watching: a seat frees up when a player leaves." : "Move the mouse (or a finger) over your half of the table.";
  renderScore();
}

/** A storage entry changed (`live`), or was read. */
function stored(key, value, version, live = false) {
  if (key === "score") {
    if (version <= game.scoreVersion && value !== undefined) return; // older than what is shown
    const before = game.score;
    game.score = { left: value?.left ?? 0, right: value?.right ?? 0 };
    game.scoreVersion = value === undefined ? 0 : version;
    if (live && game.scoreVersion && (game.score.left > before.left || game.score.right > before.right)) {
      flash(game.score.left > before.left ? "left" : "right");
    }
    renderScore();
  } else if (key.startsWith("seat/")) {
    game.seats[key.slice(5)] = value;
    renderScore();
  }
}

/** An ephemeral message from another page. */
function receive({ type, data }) {
  if (type === "paddle" && (data.side === "left" || data.side === "right") && data.side !== game.role) {
    game.received.paddle++;
    const paddle = game.paddles[data.side];
    const now = performance.now();
    const dt = Math.max((now - paddle.at) / 1000, 1 / 120);
    // Its speed, for the authoritative page's collisions.
    paddle.vx = paddle.at ? (data.x - paddle.x) / dt : 0;
    paddle.vy = paddle.at ? (data.y - paddle.y) / dt : 0;
    Object.assign(paddle, { x: data.x, y: data.y, at: now });
  } else if (type === "puck" && game.role !== "left") {
    game.received.puck++;
    Object.assign(game.puck, { x: data.x, y: data.y, vx: data.vx, vy: data.vy });
  }
}

/** The pointer moves this page's paddle, kept on its own half. */
function movePaddle(event) {
  if (game.role === "spectator") return;
  const rect = canvas.getBoundingClientRect();
  const x = ((event.clientX - rect.left) / rect.width) * W;
  const y = ((event.clientY - rect.top) / rect.height) * H;
  const [minX, maxX] = game.role === "left" ? [PADDLE_R, W / 2 - PADDLE_R] : [W / 2 + PADDLE_R, W - PADDLE_R];
  const paddle = game.paddles[game.role];
  paddle.x = clamp(x, minX, maxX);
  paddle.y = clamp(y, PADDLE_R, H - PADDLE_R);
}

function frame(now) {
  requestAnimationFrame(frame);
  const dt = Math.min((now - (lastFrame || now)) / 1000, 0.05);
  lastFrame = now;
  if (game.role !== "spectator") {
    const mine = game.paddles[game.role];
    if (dt > 0) Object.assign(mine, { vx: (mine.x - mine.lastX) / dt, vy: (mine.y - mine.lastY) / dt });
    Object.assign(mine, { lastX: mine.x, lastY: mine.y });
  }
  if (game.role === "left") simulate(dt);
  // At most 60 updates a second, however fast the display refreshes.
  if (now - lastSend >= SEND_MS - 2) {
    lastSend = now;
    publish();
  }
  draw();
}

function publish() {
  if (game.role === "spectator" || !agent.connected) return;
  const { x, y } = game.paddles[game.role];
  post("paddle", { side: game.role, x: round(x), y: round(y) });
  if (game.role === "left") {
    const { x, y, vx, vy } = game.puck;
    post("puck", { x: round(x), y: round(y), vx: round(vx), vy: round(vy) });
  }
}

function post(type, data) {
  game.sent++;
  // Fire and forget: a lost update is replaced by the next one a frame later.
  agent.send({ type, data, ephemeral: true, noReply: true }).catch(() => undefined);
}

/** The puck's physics, on the left player's page only. */
function simulate(dt) {
  const puck = game.puck;
  puck.x += puck.vx * dt;
  puck.y += puck.vy * dt;
  const keep = Math.pow(DRAG, dt);
  puck.vx *= keep;
  puck.vy *= keep;
  if (puck.y < PUCK_R) [puck.y, puck.vy] = [PUCK_R, Math.abs(puck.vy)];
  if (puck.y > H - PUCK_R) [puck.y, puck.vy] = [H - PUCK_R, -Math.abs(puck.vy)];
  const inMouth = Math.abs(puck.y - H / 2) < GOAL / 2;
  if (!inMouth && puck.x < PUCK_R) [puck.x, puck.vx] = [PUCK_R, Math.abs(puck.vx)];
  if (!inMouth && puck.x > W - PUCK_R) [puck.x, puck.vx] = [W - PUCK_R, -Math.abs(puck.vx)];
  if (puck.x < -PUCK_R) return goal("right");
  if (puck.x > W + PUCK_R) return goal("left");
  for (const paddle of Object.values(game.paddles)) collide(puck, paddle);
  const speed = Math.hypot(puck.vx, puck.vy);
  if (speed > MAX_SPEED) [puck.vx, puck.vy] = [(puck.vx * MAX_SPEED) / speed, (puck.vy * MAX_SPEED) / speed];
}

/** Pushes the puck out of a paddle and bounces it off the paddle's own motion. */
function collide(puck, paddle) {
  const dx = puck.x - paddle.x;
  const dy = puck.y - paddle.y;
  const distance = Math.hypot(dx, dy);
  const reach = PUCK_R + PADDLE_R;
  if (distance >= reach || distance === 0) return;
  const [nx, ny] = [dx / distance, dy / distance];
  puck.x = paddle.x + nx * reach;
  puck.y = paddle.y + ny * reach;
  const approach = (puck.vx - (paddle.vx || 0)) * nx + (puck.vy - (paddle.vy || 0)) * ny;
  if (approach < 0) {
    puck.vx -= 1.9 * approach * nx;
    puck.vy -= 1.9 * approach * ny;
  }
}

/** `side` scored: the puck goes back to the middle, on the side of the player who conceded. */
function goal(side) {
  Object.assign(game.puck, { x: W / 2 + (side === "left" ? 80 : -80), y: H / 2, vx: 0, vy: 0 });
  setScore((score) => ({ ...score, [side]: score[side] + 1 })).catch((e) => showError("game-error", e));
}

/** Writes `change(score)` with a compare-and-set, re-reading and retrying after a conflict. */
async function setScore(change) {
  for (;;) {
    try {
      const entry = await agent.storage.put("score", change(game.score), { version: game.scoreVersion });
      return stored("score", entry.value, entry.version, true);
    } catch (e) {
      if (e.code !== "version_conflict") throw e;
      const latest = await agent.storage.get("score");
      stored("score", latest.value, latest.version);
    }
  }
}

function draw() {
  const scale = canvas.width / W;
  ctx.setTransform(scale, 0, 0, scale, 0, 0);
  ctx.fillStyle = "#eef4fb";
  ctx.fillRect(0, 0, W, H);
  // Markings: the centre line and circle, and the two goals.
  ctx.strokeStyle = "#c7d3e3";
  ctx.lineWidth = 4;
  ctx.beginPath();
  ctx.moveTo(W / 2, 0);
  ctx.lineTo(W / 2, H);
  ctx.stroke();
  ctx.beginPath();
  ctx.arc(W / 2, H / 2, 70, 0, 2 * Math.PI);
  ctx.stroke();
  for (const side of ["left", "right"]) {
    ctx.fillStyle = COLORS[side];
    ctx.fillRect(side === "left" ? 0 : W - 8, (H - GOAL) / 2, 8, GOAL);
  }
  for (const side of ["left", "right"]) {
    const { x, y } = game.paddles[side];
    disc(x, y, PADDLE_R, COLORS[side]);
    disc(x, y, PADDLE_R * 0.45, "#ffffff55");
    if (side === game.role) {
      ctx.strokeStyle = "#1d2330";
      ctx.lineWidth = 3;
      ctx.beginPath();
      ctx.arc(x, y, PADDLE_R + 5, 0, 2 * Math.PI);
      ctx.stroke();
    }
  }
  disc(game.puck.x, game.puck.y, PUCK_R, "#1d2330");
  renderWaiting();
}

function disc(x, y, r, color) {
  ctx.fillStyle = color;
  ctx.beginPath();
  ctx.arc(x, y, r, 0, 2 * Math.PI);
  ctx.fill();
}

/** Says who is missing, when a seat is empty. */
function renderWaiting() {
  const missing = ["left", "right"].filter((side) => !game.here.has(game.seats[side]));
  const banner = $("banner");
  const text = missing.length ? `Waiting for ${missing.map((s) => (s === "left" ? "red" : "blue")).join(" and ")}: open this page in another tab` : "";
  if (banner.dataset.text !== text && !banner.dataset.goal) {
    banner.dataset.text = text;
    banner.textContent = text;
    banner.hidden = !text;
  }
}

function renderScore() {
  for (const side of ["left", "right"]) {
    $(`score-${side}`).textContent = game.score[side];
    const name = game.seats[side];
    $(`name-${side}`).textContent = `${side === "left" ? "red" : "blue"}${name ? ` · ${name}` : ""}${name === game.me ? " (you)" : ""}`;
  }
}

/** A short "Goal!" over the table. */
function flash(side) {
  const banner = $("banner");
  banner.dataset.goal = side;
  banner.dataset.text = "";
  banner.textContent = `Goal for ${side === "left" ? "red" : "blue"}!`;
  banner.hidden = false;
  clearTimeout(flash.timer);
  flash.timer = setTimeout(() => {
    delete banner.dataset.goal;
    delete banner.dataset.text; // renderWaiting shows what is missing again
    banner.hidden = true;
  }, 1200);
}

function paddleAt(x) {
  return { x, y: H / 2, vx: 0, vy: 0, lastX: x, lastY: H / 2, at: 0 };
}

function clamp(value, min, max) {
  return Math.min(max, Math.max(min, value));
}

function round(value) {
  return Math.round(value * 10) / 10;
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
