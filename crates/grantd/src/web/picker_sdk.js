// grantd's File Picker helper: grantdPicker.open({url}) opens grantd's hosted picker page (the
// `url` POST /picker/sessions returned) in a popup and resolves with the picked items, or with []
// when the user closes it. Only messages from that popup and grantd's origin are heard; no
// Microsoft token ever reaches this page.
(function (w) {
  'use strict';
  function open(opts) {
    return new Promise(function (resolve, reject) {
      if (!opts || !opts.url) { reject(new Error('grantdPicker.open: url is required')); return; }
      var url = new URL(opts.url, w.location.href);
      var win = w.open(url.toString(), opts.name || 'grantd-picker',
        'popup,width=' + (opts.width || 1080) + ',height=' + (opts.height || 680));
      if (!win) { reject(new Error('grantdPicker.open: the popup was blocked')); return; }
      var done = false;
      var timer = null;
      function settle(items) {
        if (done) return;
        done = true;
        w.removeEventListener('message', onMessage);
        if (timer) clearInterval(timer);
        resolve(items);
      }
      function onMessage(e) {
        if (e.source !== win || e.origin !== url.origin) return;
        var d = e.data || {};
        if (d.type === 'picked' && Array.isArray(d.items)) settle(d.items);
        else if (d.type === 'close') settle([]);
      }
      w.addEventListener('message', onMessage);
      timer = setInterval(function () { if (win.closed) settle([]); }, 500);
    });
  }
  w.grantdPicker = { open: open };
})(window);
