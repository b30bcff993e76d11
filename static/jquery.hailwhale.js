/*!
 * jquery.hailwhale.js: live HailWhale graphs in any page, drawn by flot.
 *
 *   <script src="http://whale:8080/static/vendor/jquery.min.js"></script>
 *   <script src="http://whale:8080/static/vendor/jquery.flot.js"></script>
 *   <script src="http://whale:8080/static/jquery.hailwhale.js"></script>
 *   <div id="graph" style="width: 800px; height: 300px"></div>
 *   <script>
 *     $('#graph').hailwhale({url: 'http://whale:8080', metrics: ['dollars'], depth: 1,
 *                            live: true});
 *   </script>
 *
 * Draws the selected dimension and its children above the threshold (10% by default) from
 * Whale's /plotpoints, on a time axis in the viewer's local time, with a legend and a tooltip
 * showing the value under the pointer. Clicking a child's line (or its legend entry) drills
 * down into it. With `live`, it polls and redraws in place, without flicker; when Whale cannot
 * be reached it says so on the graph and keeps retrying, backing off up to a minute.
 *
 * With `token` (a read token, see the README's Security section) every request carries it
 * as `Authorization: Bearer <token>`; a 401 or 403 answer is shown on the graph and stops
 * the polling. Labels are user input (dimension names): the legend gets them HTML-escaped,
 * everything else is set as text, never as markup.
 *
 * The element carries data-hailwhale-state = loading | drawn | unreachable | error, and
 * triggers `hailwhale:drawn` (with the answer), `hailwhale:error` (with the reason and the
 * HTTP status) and `hailwhale:drill` (with the new dimension path). Methods: $(el).hailwhale('refresh'),
 * $(el).hailwhale('option', {...}) to change options and redraw, $(el).hailwhale('destroy').
 */
(function ($) {
  'use strict';

  var DEFAULTS = {
    url: '',              // Whale's base URL; '' is the page's own origin
    pk: '',
    dimensions: [],       // the path to graph: [] is the overall root, or 'sales', ['sales', 'p123']
    metrics: ['hits'],    // metrics or formulas, e.g. ['dollars', 'dollars/hits']
    period: '',           // '' is Whale's first period, or e.g. '15s:3h', '1h:7d'
    since: '',            // e.g. '1h', 'today', unix seconds; '' is the period's retention
    until: '',
    depth: 0,             // levels of children to draw
    threshold: 0.1,       // a child's share of its parent needed to be drawn
    limit: '',            // the top N children only
    sort: '',             // the metric or formula children are ranked by
    tz: '',               // day buckets and named windows (today) in this IANA zone, e.g.
                          // 'Europe/Berlin' or the viewer's own; '' is Whale's TIMEZONE
    live: false,          // true (a third of a bucket, 2 to 10 s) or a number of seconds
    drill: true,          // clicking a child drills down into it
    token: '',            // a read token, sent as Authorization: Bearer <token>
    flot: {}              // extra flot options, merged over the plugin's
  };
  var MAX_BACKOFF = 60;
  // flot 4 draws its legend as SVG and leaves its look to the page's CSS (unstyled, it is a
  // black box), under the canvas that takes the pointer: the plugin brings the few rules it
  // needs, once per page, and lifts the legend so its entries can be clicked.
  var LEGEND_CSS = '.hailwhale .legendLayer .background { fill: rgba(255, 255, 255, 0.85);' +
    ' stroke: rgba(0, 0, 0, 0.15); } .hailwhale .legendLayer text { fill: #333; }' +
    ' .hailwhale .legend { z-index: 1; cursor: pointer; pointer-events: auto !important; }' +
    // flot sizes the legend from a text measure that can fall a few pixels short.
    ' .hailwhale .legendLayer { overflow: visible; }';

  // flot 4 pastes legend.labelFormatter(label) into an SVG string: labels (dimension names,
  // user input) must be escaped on their way there.
  function escapeHTML(text) {
    return String(text).replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;')
      .replace(/"/g, '&quot;').replace(/'/g, '&#39;');
  }

  function addStyles() {
    if (!$('style#hailwhale-styles').length) {
      $('<style id="hailwhale-styles"></style>').text(LEGEND_CSS).appendTo('head');
    }
  }

  function Graph(element, options) {
    addStyles();
    this.$el = $(element);
    this.options = $.extend({}, DEFAULTS, options);
    this.series = [];
    this.answer = null;
    this.plot = null;
    this.failures = 0;
    this.timer = null;
    this.request = null;
    this.$el.addClass('hailwhale').css('position', this.$el.css('position') === 'static'
      ? 'relative' : this.$el.css('position'));
    this.$canvas = $('<div class="hailwhale-plot"></div>').css({width: '100%', height: '100%'})
      .appendTo(this.$el);
    this.$status = $('<div class="hailwhale-status" role="status"></div>').css({
      position: 'absolute', left: '50%', top: '45%', transform: 'translate(-50%, -50%)',
      padding: '0.6em 1em', background: 'rgba(255, 250, 235, 0.95)', color: '#7a4b00',
      border: '1px solid #e0b060', borderRadius: '4px', font: '13px sans-serif',
      display: 'none', zIndex: 2
    }).appendTo(this.$el);
    this.$tooltip = $('<div class="hailwhale-tooltip"></div>').css({
      position: 'absolute', display: 'none', padding: '3px 6px', background: '#222',
      color: '#fff', font: '12px sans-serif', borderRadius: '3px', pointerEvents: 'none',
      whiteSpace: 'nowrap', zIndex: 3
    }).appendTo(this.$el);
    this.$canvas.on('plothover', $.proxy(this.hover, this));
    this.$canvas.on('plotclick', $.proxy(this.click, this));
    this.state('loading');
    this.refresh();
  }

  Graph.prototype.state = function (name) {
    this.$el.attr('data-hailwhale-state', name);
  };

  Graph.prototype.path = function () {
    var dims = this.options.dimensions;
    if (dims === null || dims === undefined || dims === '') { return []; }
    return $.isArray(dims) ? dims.slice() : [String(dims)];
  };

  Graph.prototype.query = function () {
    var o = this.options, params = {
      pk: o.pk, dimensions: JSON.stringify(this.path()), metrics: JSON.stringify(o.metrics),
      depth: o.depth, threshold: o.threshold
    };
    $.each(['period', 'since', 'until', 'limit', 'sort', 'tz'], function (_, name) {
      if (o[name] !== '' && o[name] !== null && o[name] !== undefined) { params[name] = o[name]; }
    });
    return params;
  };

  Graph.prototype.refresh = function () {
    var self = this;
    clearTimeout(this.timer);
    if (this.request) { this.request.abort(); }
    var token = this.options.token;
    this.request = $.ajax({
      url: this.options.url.replace(/\/$/, '') + '/plotpoints',
      data: this.query(), dataType: 'json', timeout: 15000,
      headers: token ? {Authorization: 'Bearer ' + token} : {}
    }).done(function (answer) {
      self.failures = 0;
      self.$status.hide();
      self.draw(answer);
      self.schedule(self.interval(answer));
    }).fail(function (xhr, status) {
      if (status === 'abort') { return; }
      var answer = xhr.responseJSON;
      var denied = xhr.status === 401 || xhr.status === 403;
      if (denied || (answer && answer.error && xhr.status >= 400 && xhr.status < 500)) {
        // Bad options or no (good) token: retrying cannot help, say what Whale said.
        var reason = answer && answer.error ? answer.error : 'HTTP ' + xhr.status;
        self.state('error');
        self.$status.text('HailWhale: ' + reason).show();
        self.$el.trigger('hailwhale:error', [reason, xhr.status]);
        return;
      }
      self.failures += 1;
      var wait = Math.min(MAX_BACKOFF, Math.pow(2, self.failures - 1));
      self.state('unreachable');
      self.$status.text('Whale cannot be reached' +
        (xhr.status ? ' (HTTP ' + xhr.status + ')' : '') + '; retrying in ' + wait + ' s')
        .show();
      self.$el.trigger('hailwhale:error', ['unreachable', xhr.status]);
      self.schedule(wait);
    });
  };

  Graph.prototype.interval = function (answer) {
    var live = this.options.live;
    if (!live) { return null; }
    if (typeof live === 'number') { return live; }
    // A few polls per bucket, so the current bucket is seen filling: 5 s for 15 s buckets.
    return Math.max(2, Math.min(10, (answer.interval || 15) / 3));
  };

  Graph.prototype.schedule = function (seconds) {
    if (seconds === null || seconds === undefined) { return; }
    this.timer = setTimeout($.proxy(this.refresh, this), seconds * 1000);
  };

  Graph.prototype.draw = function (answer) {
    var self = this, metrics = this.options.metrics, depth0 = answer.dimension.length;
    this.answer = answer;
    this.series = $.map(answer.series, function (s) {
      var axis = $.inArray(s.metric, metrics) + 1;
      var child = s.dimension.length > depth0;
      // null is a bucket with no value (a gauge before its first, a timing's empty bucket):
      // flot leaves a gap, and a value between two gaps would draw nothing, so such series
      // mark their points too.
      var gaps = $.grep(s.data, function (point) { return point[1] === null; }).length > 0;
      return {
        label: s.label, data: s.data, dimension: s.dimension, metric: s.metric,
        total: s.total, yaxis: Math.max(1, axis),
        lines: {show: true, lineWidth: child ? 1.5 : 2.5, fill: gaps || child ? false : 0.08},
        points: {show: gaps, radius: 2}, shadowSize: 0
      };
    });
    if (this.plot) {
      // Live updates redraw in place: no new canvas, no flicker.
      this.plot.setData(this.series);
      this.plot.setupGrid();
      this.plot.draw();
    } else {
      var yaxes = $.map(metrics, function (metric, i) {
        // One axis per metric (dollars and dollars/hits differ in scale), alternating sides.
        // A fixed label width: flot's own measure can miss the lowest tick's minus sign.
        return {position: i % 2 ? 'right' : 'left', tickFormatter: shortNumber,
                labelWidth: 40};
      });
      this.plot = $.plot(this.$canvas, this.series, $.extend(true, {
        xaxis: {mode: 'time', timeBase: 'milliseconds', timezone: 'browser'},
        yaxes: yaxes.length ? yaxes : [{}],
        grid: {hoverable: true, clickable: true, borderWidth: 1, borderColor: '#ccc'},
        legend: {show: true, position: 'nw', labelFormatter: escapeHTML}
      }, this.options.flot));
      this.legendClicks();
    }
    this.state('drawn');
    this.$el.trigger('hailwhale:drawn', [answer]);
  };

  Graph.prototype.legendClicks = function () {
    // Legend entries of children drill down too: easier to hit than a thin line. An entry
    // is matched by its place among the legend's entries, which is its series' index (the
    // plugin does not sort the legend), never by its text: labels are user input.
    var self = this;
    this.$el.off('click.hailwhale').on('click.hailwhale', '.legendLayer g', function () {
      var index = $(this).closest('.legendLayer').find('g').index(this);
      var s = self.series[index];
      if (s) { self.drill(s.dimension); }
    });
  };

  Graph.prototype.hover = function (event, pos, item) {
    if (!item) { this.$tooltip.hide(); return; }
    var when = new Date(item.datapoint[0]);
    this.$tooltip.text(item.series.label + ': ' + formatNumber(item.datapoint[1]) + ' at ' +
      when.toLocaleString()).css({left: item.pageX - this.$el.offset().left + 12,
      top: item.pageY - this.$el.offset().top - 28}).show();
  };

  Graph.prototype.click = function (event, pos, item) {
    if (item) { this.drill(item.series.dimension); }
  };

  Graph.prototype.drill = function (dimension) {
    if (!this.options.drill || !this.answer ||
        dimension.length <= this.answer.dimension.length) { return; }
    this.options.dimensions = dimension.slice();
    this.$el.trigger('hailwhale:drill', [dimension.slice()]);
    this.refresh();
  };

  Graph.prototype.option = function (options) {
    var rebuild = options.metrics !== undefined || options.flot !== undefined;
    $.extend(this.options, options);
    if (rebuild && this.plot) { this.plot.shutdown(); this.$canvas.empty(); this.plot = null; }
    this.refresh();
  };

  Graph.prototype.destroy = function () {
    clearTimeout(this.timer);
    if (this.request) { this.request.abort(); }
    if (this.plot) { this.plot.shutdown(); }
    this.$el.off('.hailwhale').removeData('hailwhale').removeAttr('data-hailwhale-state')
      .removeClass('hailwhale').empty();
  };

  function shortNumber(value) {
    var abs = Math.abs(value);
    if (abs >= 1e9) { return (value / 1e9).toFixed(1).replace(/\.0$/, '') + 'G'; }
    if (abs >= 1e6) { return (value / 1e6).toFixed(1).replace(/\.0$/, '') + 'M'; }
    if (abs >= 1e3) { return (value / 1e3).toFixed(1).replace(/\.0$/, '') + 'k'; }
    return formatNumber(value);
  }

  function formatNumber(value) {
    return Number(value).toLocaleString(undefined, {maximumFractionDigits: 2});
  }

  $.fn.hailwhale = function (options) {
    var args = Array.prototype.slice.call(arguments, 1);
    return this.each(function () {
      var graph = $.data(this, 'hailwhale');
      if (typeof options === 'string') {
        if (!graph || typeof graph[options] !== 'function') {
          $.error('jquery.hailwhale: no method ' + options);
        }
        graph[options].apply(graph, args);
      } else if (graph) {
        graph.option(options || {});
      } else {
        $.data(this, 'hailwhale', new Graph(this, options || {}));
      }
    });
  };
  $.fn.hailwhale.defaults = DEFAULTS;
  $.fn.hailwhale.formatNumber = formatNumber;
  $.fn.hailwhale.escapeHTML = escapeHTML;
}(jQuery));
