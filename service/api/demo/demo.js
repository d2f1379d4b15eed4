// The demo chat: canned answers, marked up for the browser SDK (docs/sdk-browser.md).
// Similarity between a question and the previous one is computed here, by the app, and
// only the number is sent (word overlap: a stand-in for the app's own measure).
"use strict";

const ANSWERS = [
  (q) => `Short answer for "${q}":\n\nimport csv\nwith open("data.csv", newline="") as f:\n    for row in csv.DictReader(f):\n        print(row)\n\nDictReader maps each row to the header's names.`,
  (q) => `A longer take on "${q}": for anything beyond a quick look, pandas is easier.\n\nimport pandas as pd\ndf = pd.read_csv("data.csv")\nprint(df.head())\n\nIt infers column types, parses dates with parse_dates=[...], and reads compressed files directly.`,
  (q) => `If "${q}" is about big files, stream them instead of loading everything:\n\nimport csv\nwith open("big.csv", newline="") as f:\n    reader = csv.reader(f)\n    header = next(reader)\n    total = sum(1 for _ in reader)\n\nMemory stays flat however large the file is.`,
];

function words(s) {
  return new Set(s.toLowerCase().split(/\W+/).filter(Boolean));
}

function similarity(a, b) {
  const x = words(a), y = words(b);
  const both = [...x].filter((w) => y.has(w)).length;
  const all = new Set([...x, ...y]).size;
  return all ? both / all : 0;
}

function randomId(prefix) {
  const b = new Uint8Array(8);
  crypto.getRandomValues(b);
  return prefix + Array.from(b, (v) => v.toString(16).padStart(2, "0")).join("");
}

async function main() {
  const config = await (await fetch("/demo/config.json")).json();
  if (!config.key) {
    document.getElementById("stats").textContent = config.error ? config.error.message : "no demo key";
    return;
  }
  const tacit = Tacit.init({ endpoint: config.endpoint, key: config.key, context: { surface: "chat", task_type: "coding" } });
  window.tacit = tacit;
  const thread = document.getElementById("thread");
  const question = document.getElementById("question");
  let previous = null;
  let last = null;

  document.getElementById("ask").addEventListener("submit", (e) => {
    e.preventDefault();
    const q = question.value.trim() || question.placeholder;
    question.value = "";
    const queryId = randomId("q-");
    if (previous !== null && last) {
      tacit.reformulation({ similarity: similarity(previous, q), queryId: last.queryId, responseId: last.responseId });
    }
    previous = q;
    const turn = document.createElement("section");
    turn.className = "turn";
    const asked = document.createElement("div");
    asked.className = "q";
    asked.textContent = q;
    const answers = document.createElement("div");
    answers.className = "answers";
    answers.dataset.tacitQuery = queryId;
    answers.dataset.tacitCandidates = String(ANSWERS.length);
    ANSWERS.forEach((make, i) => {
      const answer = document.createElement("article");
      answer.className = "answer";
      answer.dataset.tacitResponse = `${queryId}-r${i + 1}`;
      answer.dataset.tacitPosition = String(i + 1);
      const title = document.createElement("h3");
      title.textContent = `Answer ${i + 1} of ${ANSWERS.length}`;
      const body = document.createElement("pre");
      body.textContent = make(q);
      const use = document.createElement("button");
      use.type = "button";
      use.textContent = "Use this answer";
      use.addEventListener("click", () => {
        answers.querySelectorAll(".answer").forEach((a) => a.classList.remove("chosen"));
        answer.classList.add("chosen");
        last = { queryId, responseId: answer.dataset.tacitResponse };
      });
      answer.append(title, body, use);
      answers.append(answer);
    });
    turn.append(asked, answers);
    thread.append(turn);
    last = last && last.queryId === queryId ? last : { queryId, responseId: `${queryId}-r1` };
    document.getElementById("solved").disabled = false;
    document.getElementById("failed").disabled = false;
  });

  const finish = (outcome) => {
    if (!last) return;
    tacit.complete({ outcome, queryId: last.queryId, responseId: last.responseId });
    tacit.flush();
  };
  document.getElementById("solved").addEventListener("click", () => finish("success"));
  document.getElementById("failed").addEventListener("click", () => finish("failure"));

  setInterval(() => {
    const s = tacit.getStats();
    document.getElementById("stats").textContent =
      `queued ${s.queued} · stored ${s.accepted} · duplicates ${s.duplicates} · rejected ${s.rejected} · ` +
      `failed ${s.failed} · dropped (queue full) ${s.dropped_overflow} · retries ${s.retries} · beacons ${s.beacons}`;
  }, 500);
}

main();
