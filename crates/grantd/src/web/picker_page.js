// grantd's hosted File Picker page (web/picker.rs). Frames Microsoft's File Picker v8 and speaks
// its protocol; SharePoint tokens stay between this page and the picker's frame. The app's page
// (opener or parent) gets only {type:'picked', items} and {type:'close'}, at its recorded origin.
(function () {
  'use strict';
  var cfg = JSON.parse(document.getElementById('cfg').getAttribute('data-cfg'));
  var frame = document.getElementById('picker');
  var form = document.getElementById('launch');
  var status = document.getElementById('status');
  var app = window.opener || (window.parent !== window ? window.parent : null);
  var port = null;
  var finished = false;

  function say(text) { status.textContent = text; }
  function toApp(m) {
    if (!app) return;
    try { app.postMessage(m, cfg.appOrigin); } catch (e) { /* the app page is gone */ }
  }
  function call(path, body) {
    return fetch(path, {
      method: 'POST',
      credentials: 'omit',
      headers: { 'authorization': 'Bearer ' + cfg.token, 'content-type': 'application/json' },
      body: JSON.stringify(body)
    }).then(function (r) {
      return r.json().then(function (j) {
        if (!r.ok) {
          var e = (j && j.error) || {};
          throw new Error(e.message || ('HTTP ' + r.status));
        }
        return j.data;
      });
    });
  }
  function token(resource) {
    return call('/picker/token', { resource: resource }).then(function (d) { return d.token; });
  }
  function finish(message) {
    if (finished) return;
    finished = true;
    toApp(message);
    say(message.type === 'picked' ? 'Done. You can close this window.' : 'Closed.');
    frame.hidden = true;
    if (window.opener) window.close();
  }
  function reply(id, data) { port.postMessage({ type: 'result', id: id, data: data }); }

  function onCommand(m) {
    var c = m.data || {};
    port.postMessage({ type: 'acknowledge', id: m.id });
    switch (c.command) {
      case 'authenticate':
        token(c.resource).then(function (t) {
          reply(m.id, { result: 'token', token: t });
        }, function (e) {
          reply(m.id, { result: 'error', error: { code: 'unableToObtainToken', message: e.message } });
        });
        break;
      case 'pick':
        call('/picker/picked', { items: c.items || [] }).then(function (d) {
          reply(m.id, { result: 'success' });
          finish({ type: 'picked', items: d.items });
        }, function (e) {
          reply(m.id, { result: 'error', error: { code: 'unusableItem', message: e.message } });
          say('What you picked could not be saved: ' + e.message);
        });
        break;
      case 'close':
        finish({ type: 'close' });
        break;
      default:
        reply(m.id, { result: 'error', error: { code: 'unsupportedCommand', message: String(c.command) } });
    }
  }

  window.addEventListener('message', function (e) {
    if (e.source !== frame.contentWindow || e.origin !== cfg.pickerOrigin) return;
    var d = e.data;
    if (!d || d.type !== 'initialize' || d.channelId !== cfg.channelId || !e.ports || !e.ports[0]) return;
    port = e.ports[0];
    port.addEventListener('message', function (ev) {
      var m = ev.data;
      if (!m) return;
      if (m.type === 'command') onCommand(m);
      else if (m.type === 'notification' && m.data && m.data.notification === 'page-loaded') say('');
    });
    port.start();
    port.postMessage({ type: 'activate' });
  });

  window.addEventListener('beforeunload', function () { if (!finished) toApp({ type: 'close' }); });

  token(cfg.resource).then(function (t) {
    form.elements.access_token.value = t;
    form.submit();
    form.elements.access_token.value = '';
  }, function (e) {
    say('The file picker could not open: ' + e.message);
  });
})();
