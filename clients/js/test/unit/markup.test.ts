import { beforeEach, describe, expect, it } from "vitest";
import { markOf, spanOf, textOffset } from "../../src/markup";

beforeEach(() => {
  document.body.innerHTML = `
    <div data-tacit-query="q1" data-tacit-candidates="3">
      <article id="r" data-tacit-response="r2" data-tacit-position="2"><p>Hello <b>big</b> world</p><p>again</p></article>
    </div>
    <p id="outside">outside</p>`;
});

describe("markOf", () => {
  it("finds the response, its query and rank from the node's ancestors", () => {
    const b = document.querySelector("b")!;
    const mark = markOf(b.firstChild);
    expect(mark).toMatchObject({ responseId: "r2", queryId: "q1", position: 2, candidates: 3 });
  });

  it("is null outside a response and for a response without a query id", () => {
    expect(markOf(document.getElementById("outside"))).toBeNull();
    document.body.innerHTML = `<div data-tacit-response="r"><b>x</b></div>`;
    expect(markOf(document.querySelector("b"))).toBeNull();
  });

  it("clamps a position beyond the candidates and defaults a lone response to 1 of 1", () => {
    document.body.innerHTML = `<div data-tacit-query="q" data-tacit-response="r" data-tacit-position="9" data-tacit-candidates="2">x</div><div data-tacit-query="q" data-tacit-response="s">y</div>`;
    const [a, b] = document.querySelectorAll("div");
    expect(markOf(a)).toMatchObject({ position: 2, candidates: 2 });
    expect(markOf(b)).toMatchObject({ position: 1, candidates: 1 });
  });
});

describe("textOffset", () => {
  it("counts text-node lengths before a point, as textContent indices", () => {
    const r = document.getElementById("r")!;
    const text = r.textContent!;
    const world = document.querySelector("b")!.nextSibling!; // " world"
    expect(textOffset(r, world, 1)).toBe(text.indexOf("world"));
    const again = r.querySelectorAll("p")[1].firstChild!;
    expect(textOffset(r, again, 0)).toBe(text.indexOf("again"));
  });

  it("reads element boundary points (before the n-th child) too", () => {
    const r = document.getElementById("r")!;
    const p1 = r.querySelector("p")!;
    expect(textOffset(r, p1, 1)).toBe("Hello ".length); // before <b>
    expect(textOffset(r, r, 2)).toBe(r.textContent!.length); // after the last child
  });

  it("clamps points outside the response to its edges", () => {
    const r = document.getElementById("r")!;
    const outside = document.getElementById("outside")!.firstChild!;
    expect(textOffset(r, outside, 3)).toBe(r.textContent!.length);
    expect(textOffset(r, document.body, 0)).toBe(0);
  });

  it("gives a selection's span in characters", () => {
    const r = document.getElementById("r")!;
    const range = document.createRange();
    range.setStart(r.querySelector("p")!.firstChild!, 2);
    range.setEnd(r.querySelectorAll("p")[1].firstChild!, 3);
    const [start, end] = spanOf(r, range);
    const text = r.textContent!;
    expect([start, end]).toEqual([2, text.indexOf("again") + 3]);
  });
});
