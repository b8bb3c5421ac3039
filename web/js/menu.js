// Context menus with submenus. An item: {label, action?, submenu?: items | () => items, shortcut?, swatch?,
// disabled?}; "-" is a separator; {title} a heading.

import { closePopup, openPopup } from "./popup.js";

function buildMenu(items, root) {
  const menu = document.createElement("div");
  menu.className = "menu popup";
  for (const item of items) {
    if (item === "-") {
      menu.append(Object.assign(document.createElement("div"), { className: "menu-sep" }));
      continue;
    }
    if (item.title) {
      menu.append(Object.assign(document.createElement("div"), { className: "menu-title", textContent: item.title }));
      continue;
    }
    const row = document.createElement("div");
    row.className = `menu-item${item.disabled ? " disabled" : ""}`;
    if (item.swatch !== undefined) {
      const swatch = document.createElement("span");
      swatch.className = "swatch";
      swatch.style.setProperty("--sw", item.swatch ?? "transparent");
      row.append(swatch);
    }
    row.append(item.label);
    if (item.shortcut) row.append(Object.assign(document.createElement("span"), {
      className: "shortcut", textContent: item.shortcut,
    }));
    if (item.submenu) {
      row.append(Object.assign(document.createElement("span"), { className: "arrow", textContent: "›" }));
      row.addEventListener("pointerenter", () => openSubmenu(row, item, menu, root));
      row.addEventListener("click", () => openSubmenu(row, item, menu, root));
    } else {
      row.addEventListener("pointerenter", () => closeSubmenusAfter(menu, root));
      row.addEventListener("click", () => {
        closePopup();
        item.action?.();
      });
    }
    menu.append(row);
  }
  return menu;
}

function closeSubmenusAfter(menu, root) {
  const menus = [...root.children];
  const index = menus.indexOf(menu);
  for (const m of menus.slice(index + 1)) m.remove();
  for (const row of menu.querySelectorAll(".menu-item.open")) row.classList.remove("open");
}

function openSubmenu(row, item, menu, root) {
  if (row.classList.contains("open")) return;
  closeSubmenusAfter(menu, root);
  row.classList.add("open");
  const items = typeof item.submenu === "function" ? item.submenu() : item.submenu;
  const sub = buildMenu(items, root);
  sub.style.position = "fixed";
  root.append(sub);
  const rect = row.getBoundingClientRect();
  const parent = menu.getBoundingClientRect();
  const { width, height } = sub.getBoundingClientRect();
  // Right of the parent if it fits, else left of it, else against the window's right edge.
  let left = innerWidth - width - 4;
  if (parent.right + width + 4 <= innerWidth) left = parent.right + 2;
  else if (parent.left - width - 2 >= 0) left = parent.left - width - 2;
  sub.style.left = `${Math.max(4, left)}px`;
  sub.style.top = `${Math.max(50, Math.min(rect.top - 5, innerHeight - height - 8))}px`;
  sub.style.maxHeight = `${innerHeight - 60}px`;
  sub.style.overflowY = "auto";
}

/** Opens a menu at a client point. */
export function openMenu(items, clientX, clientY) {
  const root = document.createElement("div");
  root.style.position = "fixed";
  root.style.inset = "0 auto auto 0";
  const menu = buildMenu(items, root);
  menu.style.position = "fixed";
  root.append(menu);
  openPopup(root);
  root.classList.remove("popup"); // the holder itself is invisible; its menus are the popups
  root.classList.add("menu-root");
  const { width, height } = menu.getBoundingClientRect();
  menu.style.left = `${Math.max(4, Math.min(clientX, innerWidth - width - 8))}px`;
  menu.style.top = `${Math.max(50, Math.min(clientY, innerHeight - height - 8))}px`;
  return root;
}
