// toasts.js - transient notifications: at most 3 on screen (the oldest
// goes when a 4th comes), each dismissed after its timeout (paused while
// hovered or focused), a click opens the alert sidebar.

import { h, icon } from './dom.js';

const MAX = 3;

export class Toaster {
  constructor(region, { onOpen } = {}) {
    this.region = region;
    this.onOpen = onOpen;
    this.items = [];
    this.shown = 0;
  }

  /**
   * show({level: 'error'|'warning'|'info'|'success', title, body, timeout, kind})
   */
  show({ level = 'info', title, body = '', timeout = 5000, kind = 'alert' }) {
    this.shown++;
    const iconName = level === 'error' || level === 'warning' ? 'alert' : level === 'success' ? 'check' : 'info';
    const close = h('button', { class: 'toast-close', type: 'button', 'aria-label': 'Dismiss notification' }, icon('close'));
    const main = h('button', { class: 'toast-main', type: 'button', title: 'Open the alert history' },
      h('span', { class: 'toast-icon' }, icon(iconName)),
      h('span', { class: 'toast-text' },
        h('strong', { class: 'toast-title' }, title),
        body ? h('span', { class: 'toast-body' }, body) : null));
    const el = h('div', { class: `toast toast-${level}`, role: level === 'error' ? 'alert' : 'status', dataset: { kind } }, main, close);
    const item = { el, timer: null, left: timeout, started: 0 };
    const remove = () => this._remove(item);
    const pause = () => {
      if (!item.timer) return;
      clearTimeout(item.timer);
      item.timer = null;
      item.left -= Date.now() - item.started;
    };
    const resume = () => {
      if (item.timer || !el.isConnected) return;
      item.started = Date.now();
      item.timer = setTimeout(remove, Math.max(1000, item.left));
    };
    main.addEventListener('click', () => { remove(); if (this.onOpen) this.onOpen(); });
    close.addEventListener('click', remove);
    el.addEventListener('mouseenter', pause);
    el.addEventListener('mouseleave', resume);
    el.addEventListener('focusin', pause);
    el.addEventListener('focusout', resume);
    this.items.push(item);
    this.region.prepend(el);
    while (this.items.length > MAX) this._remove(this.items[0], true);
    resume();
    return item;
  }

  _remove(item, now = false) {
    const i = this.items.indexOf(item);
    if (i < 0) return;
    this.items.splice(i, 1);
    clearTimeout(item.timer);
    const el = item.el;
    if (now || matchMedia('(prefers-reduced-motion: reduce)').matches) {
      el.remove();
      return;
    }
    el.classList.add('leaving');
    setTimeout(() => el.remove(), 180);
  }

  clear() {
    for (const it of [...this.items]) this._remove(it, true);
  }
}
