// The MCU's "send_size" message applied to a video sender (mcu/legs/webrtc.py send_size_message):
// scale the camera down to the pane it is shown in (never below it) and cap the rate, or pause the
// stream (active: false) while it is shown nowhere. Used by join.js; the browser tests call it too.
(function () {
  "use strict";
  const chains = new WeakMap(); // one setParameters at a time per sender (getParameters/transactionId)

  function scaleFor(settings, message) {
    const w = settings.width || 0, h = settings.height || 0;
    if (!w || !h || !message.width || !message.height) return 1;
    return Math.max(1, Math.min(w / message.width, h / message.height));
  }

  async function apply(sender, message) {
    const params = sender.getParameters();
    if (!params.encodings || !params.encodings.length) params.encodings = [{}];
    const enc = params.encodings[0];
    if (message.active === false) {
      enc.active = false;
    } else {
      enc.active = true;
      const settings = sender.track ? sender.track.getSettings() : {};
      enc.scaleResolutionDownBy = scaleFor(settings, message);
      if (Number.isFinite(message.max_bitrate) && message.max_bitrate > 0) enc.maxBitrate = message.max_bitrate;
    }
    await sender.setParameters(params);
  }

  window.ccApplySendSize = function (sender, message) {
    if (!sender || !message || typeof message !== "object") return Promise.resolve();
    const next = (chains.get(sender) || Promise.resolve()).then(() => apply(sender, message)).catch((e) => {
      console.warn("send_size not applied", e);
    });
    chains.set(sender, next);
    return next;
  };
})();
