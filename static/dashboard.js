/* HailWhale's dashboard: choose a pk, a dimension (drill down), metrics and a period; the
 * graph (jquery.hailwhale.js) and the totals beside it follow live. The choice is kept in
 * the address (#...), so a view can be bookmarked and shared. */
$(function () {
  'use strict';

  var base = window.location.pathname.replace(/\/[^/]*$/, '');
  var state = $.extend({pk: '', dimensions: [], metrics: ['hits'], period: '', since: '1h',
                        depth: 1, threshold: 0.1, live: true}, readHash());
  var $graph = $('#graph');

  function readHash() {
    try {
      return JSON.parse(decodeURIComponent(window.location.hash.slice(1)) || '{}');
    } catch (e) {
      return {};
    }
  }

  function writeHash() {
    window.history.replaceState(null, '', '#' + encodeURIComponent(JSON.stringify(state)));
  }

  function api(path, params) {
    return $.getJSON(base + path, params);
  }

  function parseMetrics(text) {
    var list = $.map(text.split(','), function (m) { return $.trim(m) || null; });
    return list.length ? list : ['hits'];
  }

  function graphOptions() {
    return {url: base, pk: state.pk, dimensions: state.dimensions, metrics: state.metrics,
            period: state.period, since: state.since, depth: state.depth,
            threshold: state.threshold, live: state.live};
  }

  function update(changes) {
    $.extend(state, changes);
    writeHash();
    $graph.hailwhale('option', graphOptions());
    if (changes.dimensions !== undefined || changes.pk !== undefined) { loadChildren(); }
    if (changes.pk !== undefined) { loadMetrics(); }
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
      var names = Object.keys(answer.metrics).sort();
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
        $row.append($('<td></td>').text($.fn.hailwhale.formatNumber(rows[key].values[m] || 0)));
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
    var names = $.inArray(state.pk, pks.pks) >= 0 ? pks.pks : [state.pk].concat(pks.pks);
    $('#pk').empty().append($.map(names, function (pk) {
      return $('<option></option>').attr('value', pk).text(pk === '' ? '(default)' : pk);
    })).val(state.pk);
    $('#metrics').val(state.metrics.join(', '));
    $('#since').val(state.since);
    $('#depth').val(String(state.depth));
    $('#threshold').val(String(state.threshold));
    $('#live').prop('checked', !!state.live);
  }

  $.when(api('/periods'), api('/pks')).done(function (periods, pks) {
    fillControls(periods[0], pks[0]);
    writeHash();
    $graph.on('hailwhale:drawn', function (event, answer) { renderTotals(answer); })
      .on('hailwhale:drill', function (event, dimension) {
        state.dimensions = dimension;
        writeHash();
        loadChildren();
      })
      .hailwhale(graphOptions());
    loadChildren();
    loadMetrics();
  });

  $('#pk').on('change', function () { update({pk: $(this).val(), dimensions: []}); });
  $('#period').on('change', function () { update({period: $(this).val()}); });
  $('#since').on('change', function () { update({since: $(this).val()}); });
  $('#depth').on('change', function () { update({depth: Number($(this).val())}); });
  $('#threshold').on('change', function () { update({threshold: Number($(this).val())}); });
  $('#live').on('change', function () { update({live: $(this).prop('checked')}); });
  $('#metrics').on('change', function () { update({metrics: parseMetrics($(this).val())}); });
  $('#controls').on('submit', function (event) { event.preventDefault(); });
});
