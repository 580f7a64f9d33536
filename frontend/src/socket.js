// A websocket that comes back: reconnects with backoff and reports its state
// ("live", "lost", "back") so the page can say so plainly.

export class LiveSocket {
  constructor(url, { onMessage, onState }) {
    this.url = url;
    this.onMessage = onMessage;
    this.onState = onState;
    this.delay = 500;
    this.everOpen = false;
    this.lost = false;
    this.connect();
  }

  connect() {
    const ws = new WebSocket(this.url);
    ws.onopen = () => {
      this.delay = 500;
      this.onState(this.lost ? "back" : "live");
      this.lost = false;
      this.everOpen = true;
    };
    ws.onmessage = (event) => this.onMessage(event.data);
    ws.onclose = () => {
      if (!this.lost) this.onState("lost");
      this.lost = true;
      setTimeout(() => this.connect(), this.delay);
      this.delay = Math.min(this.delay * 2, 5000);
    };
    this.ws = ws;
  }
}

/** The ws:// URL of an API channel on this page's own server. */
export function channelUrl(origin, path, token) {
  const url = new URL(path, origin.replace(/^http/, "ws"));
  url.searchParams.set("token", token);
  return url.href;
}
