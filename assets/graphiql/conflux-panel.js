// Conflux's panel beside GraphiQL's response (docs/PLAN.md): the upstream
// calls of the last response as a timeline (`extensions.conflux.calls`, the
// debug waterfall), the mapping problems met, and the plan as a tree
// (`extensions.conflux.plan`). Two switches add the headers that ask for
// them: `conflux-debug: 1` and `conflux-explain: 1` (both need
// `[server].debug = true`). Plain DOM, no framework, no other file.
(function () {
  'use strict';

  var panel, body, debugBox, explainBox;

  function el(tag, className, text) {
    var node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function ms(value) {
    return (Math.round(value * 1000) / 1000).toFixed(3) + ' ms';
  }

  // One row per call: the label, then a bar placed on the operation's
  // time axis (start to end of the last call).
  function timeline(calls) {
    var section = el('section', 'conflux-timeline');
    section.appendChild(el('h3', null, 'Upstream calls (' + calls.length + ')'));
    var end = 0;
    calls.forEach(function (call) {
      end = Math.max(end, call.start_ms + call.duration_ms);
    });
    end = end || 1;
    calls.forEach(function (call) {
      var row = el('div', 'conflux-call');
      var label = el('div', 'conflux-call-label');
      label.appendChild(el('span', 'conflux-field', call.field || '(field unknown)'));
      label.appendChild(
        el('span', 'conflux-route', call.service + ' ' + call.method + ' ' + call.path)
      );
      row.appendChild(label);
      var track = el('div', 'conflux-track');
      var bar = el('div', 'conflux-bar conflux-status-' + call.status.replace(/[^a-z0-9]/gi, ''));
      bar.style.left = (100 * call.start_ms) / end + '%';
      bar.style.width = Math.max(0.5, (100 * call.duration_ms) / end) + '%';
      var facts = [
        'start ' + ms(call.start_ms),
        ms(call.duration_ms),
        call.status,
      ];
      if (call.batch_size !== undefined) facts.push('batch of ' + call.batch_size);
      if (call.cache_hit) facts.push('cache hit');
      bar.title = (call.field || '') + ' — ' + facts.join(' · ');
      bar.dataset.field = call.field || '';
      bar.dataset.service = call.service;
      track.appendChild(bar);
      row.appendChild(track);
      row.appendChild(el('div', 'conflux-facts', facts.join(' · ')));
      section.appendChild(row);
    });
    return section;
  }

  function problems(list) {
    var section = el('section', 'conflux-problems');
    section.appendChild(el('h3', null, 'Mapping problems (' + list.length + ')'));
    var ul = el('ul');
    list.forEach(function (problem) {
      var li = el('li', 'conflux-problem');
      li.appendChild(el('code', null, problem.path.join('.')));
      li.appendChild(document.createTextNode(' ' + problem.field + ': ' + problem.detail));
      ul.appendChild(li);
    });
    section.appendChild(ul);
    return section;
  }

  // The plan's calls nested under the calls whose answers they need.
  function tree(plan) {
    var section = el('section', 'conflux-plan');
    section.appendChild(el('h3', null, 'Plan: ' + plan.predicted_calls + ' predicted calls'));
    var children = {};
    plan.calls.forEach(function (call) {
      var parent = call.depends_on.length ? call.depends_on[0] : '';
      (children[parent] = children[parent] || []).push(call);
    });
    function branch(parent) {
      var ul = el('ul', 'conflux-plan-level');
      (children[parent] || []).forEach(function (call) {
        var li = el('li', 'conflux-plan-call');
        li.appendChild(el('span', 'conflux-field', call.field));
        var how = call.service + ' ' + call.method + ' ' + call.path;
        if (call.batched !== null) how += ' · batched (max ' + call.batched + ')';
        if (call.per_item_of !== null) how += ' · once per item of ' + call.per_item_of;
        li.appendChild(el('span', 'conflux-route', how));
        li.appendChild(el('span', 'conflux-count', '× ' + call.count));
        if (children[call.field] && call.field !== parent) li.appendChild(branch(call.field));
        ul.appendChild(li);
      });
      return ul;
    }
    section.appendChild(branch(''));
    return section;
  }

  function show(result) {
    if (!body || !result || typeof result !== 'object') return;
    var conflux = result.extensions && result.extensions.conflux;
    body.textContent = '';
    if (!conflux || (!conflux.calls && !conflux.plan)) {
      body.appendChild(
        el('p', 'conflux-hint', 'Turn on a switch above and run a query to see its upstream calls.')
      );
      return;
    }
    if (conflux.plan) body.appendChild(tree(conflux.plan));
    if (conflux.calls) body.appendChild(timeline(conflux.calls));
    if (conflux.problems && conflux.problems.length) body.appendChild(problems(conflux.problems));
  }

  function attach(container) {
    panel = el('aside', 'conflux-panel');
    panel.id = 'conflux-panel';
    var header = el('header');
    header.appendChild(el('strong', null, 'Conflux'));
    function toggle(label, id) {
      var wrap = el('label');
      var box = el('input');
      box.type = 'checkbox';
      box.id = id;
      wrap.appendChild(box);
      wrap.appendChild(document.createTextNode(' ' + label));
      header.appendChild(wrap);
      return box;
    }
    debugBox = toggle('calls (conflux-debug)', 'conflux-debug');
    explainBox = toggle('plan only (conflux-explain)', 'conflux-explain');
    panel.appendChild(header);
    body = el('div', 'conflux-body');
    panel.appendChild(body);
    container.appendChild(panel);
    show({});
  }

  // GraphiQL's fetcher answers a promise of a result, or (it takes
  // multipart answers) of an async iterable of them: each one carrying
  // Conflux's extensions is shown.
  function tap(value) {
    if (value && typeof value[Symbol.asyncIterator] === 'function') {
      return (async function* () {
        var first = true;
        for await (var part of value) {
          if (first || (part && part.extensions && part.extensions.conflux)) show(part);
          first = false;
          yield part;
        }
      })();
    }
    show(value);
    return value;
  }

  // Wraps a GraphiQL fetcher: adds the switches' headers and shows the
  // responses in the panel (not the schema's introspection query).
  function wrap(fetcher) {
    return function (params, options) {
      options = options || {};
      var headers = Object.assign({}, options.headers || {});
      if (debugBox && debugBox.checked) headers['conflux-debug'] = '1';
      if (explainBox && explainBox.checked) headers['conflux-explain'] = '1';
      var result = fetcher(params, Object.assign({}, options, { headers: headers }));
      if (params.operationName === 'IntrospectionQuery') return result;
      if (result && typeof result.then === 'function') return result.then(tap);
      return tap(result);
    };
  }

  window.ConfluxPanel = { attach: attach, wrap: wrap, show: show };
})();
