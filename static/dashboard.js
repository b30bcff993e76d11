/* HailWhale's dashboard: choose a pk, a dimension (drill down), metrics and a period; the
 * graph (jquery.hailwhale.js) and the totals beside it follow live. The choice is kept in
 * the address (#...), so a view can be bookmarked and shared.
 *
 * A HailWhale with a secret needs a read token: the first answer 401 or 403 shows a form
 * that keeps the token in localStorage. A share link /#token=<token>&view=<the view> takes
 * its token for this tab only (sessionStorage, preferred), drops it from the address and
 * opens that view; "share" makes such a link for the view shown, and the embed.js tag that
 * draws it on any page. */
$(function () {
  'use strict';

  var base = window.location.pathname.replace(/\/[^/]*$/, '');
  var TOKEN_KEY = 'hailwhale.token';
  takeSharedToken();
  var token = storedToken('sessionStorage') || storedToken('localStorage');
  var started = false;
  var state = $.extend({pk: '', dimensions: [], metrics: ['hits'], period: '', since: '1h',
                        depth: 1, threshold: 0.1, live: true, tz: ''}, readHash());
  var $graph = $('#graph');

  function takeSharedToken() {
    var match = /^#token=([^&]+)(?:&view=(.*))?$/.exec(window.location.hash);
    if (!match) { return; }
    try {
      window.sessionStorage.setItem(TOKEN_KEY, decodeURIComponent(match[1]));
    } catch (e) { /* no storage: the token is gone with the address */ }
    // Out of the visible address (and of what is copied from it, and of the history); the
    // view stays, as the address of every view does.
    window.history.replaceState(null, '', window.location.pathname + window.location.search +
                                (match[2] ? '#' + match[2] : ''));
  }

  function storedToken(storage) {
    try {
      return window[storage].getItem(TOKEN_KEY) || '';
    } catch (e) {
      return '';
    }
  }

  function showAccess() {
    $('#share-badge').prop('hidden', !token || token !== storedToken('sessionStorage'));
    $('#forget-token').prop('hidden', !token);
  }

  function askForToken(reason) {
    $('#token-error').text(token && reason ? reason : '');
    $('#token-form').prop('hidden', false);
    $('#token').trigger('focus');
  }

  function denied(xhr) {
    if (xhr.status !== 401 && xhr.status !== 403) { return; }
    askForToken(xhr.responseJSON && xhr.responseJSON.error);
  }

  function readHash() {
    try {
      return JSON.parse(decodeURIComponent(window.location.hash.slice(1)) || '{}');
    } catch (e) {
      return {};
    }
  }

  function writeHash() {
    window.history.replaceState(null, '', '#' + encodeURIComponent(JSON.stringify(state)));
    if (!$('#share-panel').prop('hidden')) { showShare(); }
  }

  function api(path, params) {
    return $.ajax({url: base + path, data: params, dataType: 'json',
                   headers: token ? {Authorization: 'Bearer ' + token} : {}}).fail(denied);
  }

  function parseMetrics(text) {
    var list = $.map(text.split(','), function (m) { return $.trim(m) || null; });
    return list.length ? list : ['hits'];
  }

  function graphOptions() {
    return {url: base, pk: state.pk, dimensions: state.dimensions, metrics: state.metrics,
            period: state.period, since: state.since, depth: state.depth,
            threshold: state.threshold, live: state.live, token: token, tz: state.tz || ''};
  }

  function update(changes) {
    $.extend(state, changes);
    writeHash();
    $graph.hailwhale('option', graphOptions());
    if (changes.dimensions !== undefined || changes.pk !== undefined) { loadChildren(); }
    if (changes.pk !== undefined) { loadMetrics(); loadDecisions(); }
    if (changes.metrics !== undefined) { markChips(); }
  }

  function link(text, onClick) {
    return $('<a href="#"></a>').text(text).on('click', function (event) {
      event.preventDefault();
      onClick();
    });
  }

  function renderBreadcrumb() {
    var $crumb = $('#breadcrumb').empty();
    var path = state.dimensions;
    $crumb.append(path.length ? link('Overall', function () { update({dimensions: []}); })
                              : $('<span class="here">Overall</span>'));
    $.each(path, function (i, name) {
      $crumb.append(document.createTextNode(' › '));
      if (i === path.length - 1) {
        $crumb.append($('<span class="here"></span>').text(name));
      } else {
        $crumb.append(link(name, function () { update({dimensions: path.slice(0, i + 1)}); }));
      }
    });
  }

  function loadChildren() {
    renderBreadcrumb();
    api('/dimensions', {pk: state.pk, dimensions: JSON.stringify(state.dimensions)})
      .done(function (answer) {
        var $list = $('#children').empty();
        if (!answer.children.length) { $list.append($('<li class="none"></li>').text('none')); }
        $.each(answer.children, function (_, child) {
          $list.append($('<li></li>').append(
            link(child.name, function () { update({dimensions: child.dimension}); })
              .addClass('child').attr('data-name', child.name)));
        });
      });
  }

  function loadMetrics() {
    api('/metrics', {pk: state.pk}).done(function (answer) {
      // A timing is offered as the statistics most asked for; a gauge reads its last value.
      var names = [];
      $.each(Object.keys(answer.metrics).sort(), function (_, name) {
        if (answer.metrics[name] === 'timing') {
          $.each(['p50', 'p99', 'mean', 'count'], function (_, stat) {
            names.push(name + ':' + stat);
          });
        } else {
          names.push(name);
        }
      });
      var $chips = $('#metric-chips').empty();
      $('#known-metrics').empty().append($.map(names, function (name) {
        return $('<option></option>').attr('value', name);
      }));
      $.each(names, function (_, name) {
        $chips.append($('<li></li>').append(link(name, function () {
          var metrics = state.metrics.slice(), at = $.inArray(name, metrics);
          if (at >= 0 && metrics.length > 1) { metrics.splice(at, 1); } else if (at < 0) {
            metrics.push(name);
          }
          $('#metrics').val(metrics.join(', '));
          update({metrics: metrics});
        }).attr('data-metric', name)));
      });
      markChips();
    });
  }

  function markChips() {
    $('#metric-chips a').each(function () {
      $(this).toggleClass('on', $.inArray($(this).attr('data-metric'), state.metrics) >= 0);
    });
  }

  function renderTotals(answer) {
    var metrics = state.metrics, rows = {}, order = [];
    $.each(answer.series, function (_, s) {
      var key = JSON.stringify(s.dimension);
      if (!rows[key]) {
        rows[key] = {label: s.dimension.length ? s.dimension.join(' / ') : 'Overall',
                     values: {}};
        order.push(key);
      }
      rows[key].values[s.metric] = s.total;
    });
    var $head = $('<tr><th>dimension</th></tr>');
    $.each(metrics, function (_, m) { $head.append($('<th></th>').text(m)); });
    $('#totals thead').empty().append($head);
    var $body = $('#totals tbody').empty();
    $.each(order, function (_, key) {
      var $row = $('<tr></tr>').append($('<td></td>').text(rows[key].label));
      $.each(metrics, function (_, m) {
        var value = rows[key].values[m];  // null: no value in the window (a gauge, a p99)
        $row.append($('<td></td>').text(value === null ? '–' :
                                         $.fn.hailwhale.formatNumber(value || 0)));
      });
      $body.append($row);
    });
    $('#updated').text('updated ' + new Date().toLocaleTimeString() +
                       (state.live ? ' · live' : ''));
  }

  function fillControls(periods, pks) {
    $('#period').empty().append($.map(periods.periods, function (p) {
      return $('<option></option>').attr('value', p.name).text(p.label);
    }));
    if (!state.period) { state.period = periods.periods[0].name; }
    $('#period').val(state.period);
    if (token && pks.pks.length && $.inArray(state.pk, pks.pks) < 0) {
      state.pk = pks.pks[0];  // a token shows the pks it covers, and only those
    }
    var names = $.inArray(state.pk, pks.pks) >= 0 ? pks.pks : [state.pk].concat(pks.pks);
    $('#pk').empty().append($.map(names, function (pk) {
      return $('<option></option>').attr('value', pk).text(pk === '' ? '(default)' : pk);
    })).val(state.pk);
    $('#metrics').val(state.metrics.join(', '));
    $('#since').val(state.since);
    $('#depth').val(String(state.depth));
    $('#threshold').val(String(state.threshold));
    $('#live').prop('checked', !!state.live);
    // Days in Whale's zone (from /periods) or in the viewer's own, as the browser names it.
    var own = window.Intl && Intl.DateTimeFormat().resolvedOptions().timeZone;
    $('#tz option:first').text("Whale's zone (" + periods.timezone + ')');
    $('#tz option:gt(0)').remove();
    if (own && own !== periods.timezone) {
      $('#tz').append($('<option></option>').attr('value', own).text('yours (' + own + ')'));
    }
    if (state.tz && $.inArray(state.tz, [own]) < 0) {
      $('#tz').append($('<option></option>').attr('value', state.tz).text(state.tz));
    }
    $('#tz').val(state.tz || '');
  }

  function start() {
    showAccess();
    $.when(api('/periods'), api('/pks')).done(function (periods, pks) {
      $('#token-form').prop('hidden', true);
      fillControls(periods[0], pks[0]);
      writeHash();
      if (started) {
        $graph.hailwhale('option', graphOptions());
      } else {
        started = true;
        $graph.on('hailwhale:drawn', function (event, answer) { renderTotals(answer); })
          .on('hailwhale:drill', function (event, dimension) {
            state.dimensions = dimension;
            writeHash();
            loadChildren();
          })
          .on('hailwhale:error', function (event, reason, status) {
            if (status === 401 || status === 403) { askForToken(reason); }
          })
          .hailwhale(graphOptions());
      }
      loadChildren();
      loadMetrics();
      loadDecisions();
    });
  }

  // Decisions (README: "Decisions"): the pk's decisions, and for the one chosen its options'
  // classes and scores as /decide answers them (record=0: looking is not choosing).
  function loadDecisions() {
    api('/decisions', {pk: state.pk}).done(function (answer) {
      var names = Object.keys(answer.decisions).sort();
      $('#decisions').prop('hidden', names.length === 0);
      $('#decision').empty().append($.map(names, function (name) {
        return $('<option></option>').attr('value', name).text(name);
      }));
      $('#decision').data('options', answer.decisions);
      showDecision();
    });
  }

  function showDecision() {
    var name = $('#decision').val(), options = ($('#decision').data('options') || {})[name];
    if (!name || !options || !options.length) { return; }
    api('/decide', {pk: state.pk, decision: name, options: JSON.stringify(options),
                    metrics: $.trim($('#decision-metrics').val()) || 'value/hits',
                    record: 0}).done(function (answer) {
      var $body = $('#decision-scores tbody').empty();
      $.each(options, function (_, option) {
        var score = answer.scores[option], beats = score.beats_others;
        $body.append($('<tr></tr>').attr('data-option', option).addClass(score['class'])
          .append($('<td></td>').text(option), $('<td></td>').text(score['class']),
                  $('<td></td>').text($.fn.hailwhale.formatNumber(score.value)),
                  $('<td></td>').text($.fn.hailwhale.formatNumber(score.denominator)),
                  $('<td></td>').text(beats === null ? '–' : Math.round(beats * 100) + '%'),
                  $('<td></td>').text(String(score.chosen_recently))));
      });
    });
  }

  $('#token-form').on('submit', function (event) {
    event.preventDefault();
    token = $.trim($('#token').val());
    if (!token) { return; }
    try {
      window.sessionStorage.removeItem(TOKEN_KEY);  // a share link's token did not do
      window.localStorage.setItem(TOKEN_KEY, token);
    } catch (e) { /* kept for this page only */ }
    $('#token').val('');
    start();
  });
  $('#forget-token').on('click', function (event) {
    event.preventDefault();
    try {
      window.sessionStorage.removeItem(TOKEN_KEY);
      window.localStorage.removeItem(TOKEN_KEY);
    } catch (e) { /* nothing kept */ }
    token = '';
    if (started) { $graph.hailwhale('option', {token: ''}); }
    start();
  });

  // What a token may do, read from its claims (not verified: Whale does that); a share link
  // and an embed tag carry a read token only, never one that can write or administer.
  function claims(text) {
    try {
      var part = text.split('.')[1].replace(/-/g, '+').replace(/_/g, '/');
      while (part.length % 4) { part += '='; }
      return JSON.parse(window.atob(part)) || {};
    } catch (e) {
      return {};
    }
  }

  function attribute(name, value) {
    var text = String(value).replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
    return ' data-' + name + (text.indexOf('"') < 0 ? '="' + text + '"'
      : text.indexOf("'") < 0 ? "='" + text + "'" : '="' + text.replace(/"/g, '&quot;') + '"');
  }

  // The tag that draws this view on any page (README: "One tag: embed.js"), as text.
  function embedTag(shared) {
    var metrics = state.metrics.join(',').split(',').length === state.metrics.length
      ? state.metrics.join(',') : JSON.stringify(state.metrics);
    var tag = '<script src="' + window.location.origin + base + '/embed.js"' +
      attribute('metrics', metrics);
    if (state.pk) { tag += attribute('pk', state.pk); }
    if (state.dimensions.length) { tag += attribute('dimensions', JSON.stringify(state.dimensions)); }
    $.each(['period', 'since', 'depth', 'threshold', 'tz'], function (_, name) {
      if (state[name] !== '' && state[name] !== undefined) { tag += attribute(name, state[name]); }
    });
    if (!state.live) { tag += attribute('live', 'false'); }
    if (shared) { tag += attribute('token', shared); }
    return tag + '></script>';
  }

  function showShare() {
    var can = token ? claims(token).can : '';
    var shared = can === 'read' ? token : '';
    var view = encodeURIComponent(JSON.stringify(state));
    var link = window.location.origin + window.location.pathname +
      (shared ? '#token=' + encodeURIComponent(shared) + '&view=' + view : '#' + view);
    $('#share-link').val(link);
    $('#share-embed').val(embedTag(shared));
    $('#share-note').text(!token ? 'No token in either: this HailWhale asks for none.'
      : shared ? 'Both carry your read token (pks: ' + (claims(token).pks || []).join(', ') +
        '): whoever has the link or sees the page can read what it covers until it expires.'
      : 'Your token is not a read token (it can ' + (can || 'do more') + '), so neither ' +
        'carries it: make one with hailwhale token --can read --pk ' + (state.pk || "''") + '.');
    $('#share-panel').prop('hidden', false);
  }

  $('#share').on('click', function (event) {
    event.preventDefault();
    if (!$('#share-panel').prop('hidden')) { $('#share-panel').prop('hidden', true); return; }
    showShare();
    $('#share-link').trigger('select');
    if (window.navigator.clipboard && window.isSecureContext) {
      window.navigator.clipboard.writeText($('#share-link').val()).then(function () {
        $('#share-note').text($('#share-note').text() + ' The link is copied.');
      }, function () { /* not allowed: it is selected, to copy by hand */ });
    }
  });

  start();

  $('#pk').on('change', function () { update({pk: $(this).val(), dimensions: []}); });
  $('#period').on('change', function () { update({period: $(this).val()}); });
  $('#since').on('change', function () { update({since: $(this).val()}); });
  $('#depth').on('change', function () { update({depth: Number($(this).val())}); });
  $('#threshold').on('change', function () { update({threshold: Number($(this).val())}); });
  $('#live').on('change', function () { update({live: $(this).prop('checked')}); });
  $('#decision, #decision-metrics').on('change', showDecision);
  $('#tz').on('change', function () { update({tz: $(this).val()}); });
  $('#metrics').on('change', function () { update({metrics: parseMetrics($(this).val())}); });
  $('#controls').on('submit', function (event) { event.preventDefault(); });
});
