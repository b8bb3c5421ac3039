// Node search: fuzzy matching over names, aliases, categories and descriptions, in a keyboard-driven popup.

import { closePopup, openPopup } from "./popup.js";
import { typeColor } from "./types.js";

const FIELD_WEIGHTS = [["displayName", 3], ["name", 2.5], ["aliases", 2], ["category", 1.5], ["description", 0.6]];
const MAX_RESULTS = 60;

/** Indices of `query`'s characters found in order in `text` (preferring word starts), or null. */
export function matchPositions(query, text) {
  const lower = text.toLowerCase();
  const at = lower.indexOf(query);
  if (at >= 0) return Array.from({ length: query.length }, (_, i) => at + i);
  const positions = [];
  let from = 0;
  for (const char of query) {
    const found = lower.indexOf(char, from);
    if (found < 0) return null;
    positions.push(found);
    from = found + 1;
  }
  return positions;
}

function isWordStart(text, i) {
  return i === 0 || /[\s_/().-]/.test(text[i - 1]) || (/[a-z]/.test(text[i - 1]) && /[A-Z]/.test(text[i]));
}

/** How well one query word matches a text: substrings beat scattered letters; word starts and early hits count. */
export function fuzzyScore(query, text) {
  if (!text) return 0;
  const positions = matchPositions(query, text);
  if (!positions) return 0;
  const contiguous = positions.every((p, i) => i === 0 || p === positions[i - 1] + 1);
  let score = contiguous ? 10 + query.length * 2 : query.length;
  if (isWordStart(text, positions[0])) score += 6;
  if (positions[0] === 0) score += 4;
  if (contiguous && query.length === text.length) score += 10;
  if (!contiguous) {
    const spread = positions[positions.length - 1] - positions[0] + 1;
    score -= Math.min(score - 1, (spread - query.length) * 0.5);
    score += positions.filter((p) => isWordStart(text, p)).length * 2;
  }
  return Math.max(score - positions[0] * 0.05, 0.1);
}

function fieldText(def, field) {
  return field === "aliases" ? def.aliases.join(" ") : def[field];
}

/** The definitions matching every word of the query, best first. */
export function searchNodes(defs, query) {
  const words = query.toLowerCase().split(/\s+/).filter(Boolean);
  if (!words.length) {
    return [...defs].sort((a, b) => a.category.localeCompare(b.category) || a.displayName.localeCompare(b.displayName));
  }
  const scored = [];
  for (const def of defs) {
    let total = 0;
    for (const word of words) {
      let best = 0;
      for (const [field, weight] of FIELD_WEIGHTS) best = Math.max(best, fuzzyScore(word, fieldText(def, field)) * weight);
      if (best === 0) {
        total = -1;
        break;
      }
      total += best;
    }
    if (total > 0) scored.push({ def, total });
  }
  scored.sort((a, b) => b.total - a.total || a.def.displayName.length - b.def.displayName.length);
  return scored.map((s) => s.def);
}

function highlighted(text, query) {
  const span = document.createElement("span");
  const word = query.toLowerCase().split(/\s+/).filter(Boolean)[0];
  const marks = new Set(word ? matchPositions(word, text) ?? [] : []);
  [...text].forEach((char, i) => {
    if (marks.has(i)) {
      const mark = document.createElement("mark");
      mark.textContent = char;
      span.append(mark);
    } else {
      span.append(char);
    }
  });
  return span;
}

function typeChip(type) {
  const chip = document.createElement("span");
  chip.className = "type-chip";
  chip.style.setProperty("--c", typeColor(type));
  chip.textContent = type;
  return chip;
}

/** Opens the search; filter {accepts: TYPE} or {produces: TYPE} keeps only nodes that fit a dragged link. */
export function openSearch(schema, { clientX, clientY, filter = null, onPick }) {
  let defs = schema.all();
  if (filter?.accepts) defs = schema.acceptors(filter.accepts).map((m) => m.def);
  if (filter?.produces) defs = schema.producers(filter.produces).map((m) => m.def);
  const root = document.createElement("div");
  root.className = "search";
  const input = document.createElement("input");
  input.className = "search-input";
  input.placeholder = "Search nodes…";
  input.spellcheck = false;
  root.append(input);
  if (filter) {
    const line = document.createElement("div");
    line.className = "search-filter";
    line.append(filter.accepts ? "Nodes that take" : "Nodes that give", typeChip(filter.accepts ?? filter.produces));
    root.append(line);
  }
  const list = document.createElement("div");
  list.className = "search-list";
  root.append(list);
  let results = [];
  let active = 0;

  const pick = (def) => {
    closePopup();
    onPick(def);
  };
  const setActive = (i) => {
    list.children[active]?.classList.remove("active");
    active = Math.max(0, Math.min(results.length - 1, i));
    list.children[active]?.classList.add("active");
    list.children[active]?.scrollIntoView({ block: "nearest" });
  };
  const render = () => {
    results = searchNodes(defs, input.value).slice(0, MAX_RESULTS);
    list.replaceChildren();
    if (!results.length) {
      const empty = document.createElement("div");
      empty.className = "search-empty";
      empty.textContent = "No node matches";
      list.append(empty);
    }
    results.forEach((def, i) => {
      const item = document.createElement("div");
      item.className = "search-item";
      item.dataset.type = def.name;
      const name = document.createElement("div");
      name.className = "name";
      name.append(highlighted(def.displayName, input.value));
      const category = document.createElement("div");
      category.className = "category";
      category.textContent = def.category;
      const desc = document.createElement("div");
      desc.className = "desc";
      desc.textContent = def.description || def.name;
      item.append(name, category, desc);
      item.addEventListener("pointermove", () => active !== i && setActive(i));
      item.addEventListener("click", () => pick(def));
      list.append(item);
    });
    active = 0;
    list.children[0]?.classList.add("active");
  };
  input.addEventListener("input", render);
  input.addEventListener("keydown", (e) => {
    e.stopPropagation();
    if (e.key === "ArrowDown") setActive(active + 1);
    else if (e.key === "ArrowUp") setActive(active - 1);
    else if (e.key === "Enter" && results[active]) pick(results[active]);
    else if (e.key === "Escape") closePopup();
    else return;
    e.preventDefault();
  });
  render();
  openPopup(root, { clientX, clientY });
  input.focus();
  return root;
}
