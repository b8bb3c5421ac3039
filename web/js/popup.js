// The one floating panel open at a time (search, menu, dialog): closed by Escape or a click outside it.

let current = null;

export function closePopup() {
  if (!current) return;
  const { el, onClose } = current;
  current = null;
  el.remove();
  onClose?.();
}

export function isPopupOpen() {
  return current !== null;
}

/** Shows `el` (class "popup") at a client point kept inside the window, or centred when no point is given. */
export function openPopup(el, { clientX, clientY, onClose } = {}) {
  closePopup();
  el.classList.add("popup");
  document.getElementById("overlay-root").append(el);
  if (clientX !== undefined) {
    const { width, height } = el.getBoundingClientRect();
    el.style.left = `${Math.max(8, Math.min(clientX, innerWidth - width - 8))}px`;
    el.style.top = `${Math.max(54, Math.min(clientY, innerHeight - height - 8))}px`;
  }
  current = { el, onClose };
  return el;
}

window.addEventListener("pointerdown", (e) => {
  if (current && !current.el.contains(e.target) && !e.target.closest?.(".popup")) closePopup();
}, true);

window.addEventListener("keydown", (e) => {
  if (e.key === "Escape" && current) {
    e.preventDefault();
    e.stopPropagation();
    closePopup();
  }
}, true);
