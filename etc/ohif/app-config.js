/** @type {AppTypes.Config} */
// OHIF viewer (npm @ohif/app 3.x) configuration for a dwdaemon DICOMweb server.
//
// Copy this file over the app-config.js of OHIF's built dist/ (or serve it at /app-config.js)
// and set DWDAEMON below to the address browsers use to reach dwdaemon. When the viewer is
// served from another origin than dwdaemon (another host or port), enable CORS in dwdaemon's
// configuration:   "Cors" : { "Enabled" : true, "AllowedOrigins" : [ "http://viewer-host:3000" ] }
// See README.md, "CORS and web viewers".

// Where dwdaemon answers (scheme://host:port, no trailing slash), and its DICOMweb and
// WADO-URI roots (DicomWeb.Root and DicomWeb.WadoRoot).
const DWDAEMON = 'http://127.0.0.1:8042';
const DICOMWEB_ROOT = DWDAEMON + '/dicom-web';
const WADO_URI_ROOT = DWDAEMON + '/wado';

// HTTP Basic credentials ('user:password' of RegisteredUsers) when dwdaemon has
// AuthenticationEnabled; null otherwise. They are readable by anyone who can load this page:
// fine on a workstation or a closed network, otherwise put an authenticating proxy in front.
const DWDAEMON_BASIC_AUTH = null;

// OHIF's data sources read their Authorization header from its user-authentication service;
// this small inline extension makes it send Basic credentials on every request (QIDO, WADO,
// thumbnails and the image loader alike).
const dwdaemonBasicAuth = {
  id: 'dwdaemon-basic-auth',
  preRegistration({ servicesManager }) {
    if (!DWDAEMON_BASIC_AUTH) {
      return;
    }
    const header = { Authorization: 'Basic ' + btoa(DWDAEMON_BASIC_AUTH) };
    servicesManager.services.userAuthenticationService.setServiceImplementation({
      getAuthorizationHeader: () => header,
    });
  },
};

window.config = {
  name: 'dwdaemon',
  routerBasename: null,
  extensions: [dwdaemonBasicAuth],
  modes: [],
  customizationService: {},
  showStudyList: true,
  maxNumberOfWebWorkers: 3,
  showWarningMessageForCrossOrigin: false,
  showCPUFallbackMessage: true,
  showLoadingIndicator: true,
  strictZSpacingForVolumeViewport: true,
  groupEnabledModesFirst: true,
  maxNumRequests: {
    interaction: 100,
    thumbnail: 5,
    prefetch: 25,
  },
  showErrorDetails: 'always',
  defaultDataSourceName: 'dwdaemon',
  dataSources: [
    {
      namespace: '@ohif/extension-default.dataSourcesModule.dicomweb',
      sourceName: 'dwdaemon',
      configuration: {
        friendlyName: 'dwdaemon',
        name: 'dwdaemon',
        qidoRoot: DICOMWEB_ROOT,
        wadoRoot: DICOMWEB_ROOT,
        wadoUriRoot: WADO_URI_ROOT,
        // QIDO-RS: dwdaemon answers includefield, fuzzymatching and wildcards.
        qidoSupportsIncludeField: true,
        supportsFuzzyMatching: true,
        supportsWildcard: true,
        supportsReject: false,
        // WADO-RS frames for the viewports (dwdaemon serves native and encapsulated frames).
        imageRendering: 'wadors',
        // Thumbnails from dwdaemon's WADO-RS .../thumbnail (one JPEG), fetched with the same
        // Authorization header. 'rendered' works too.
        thumbnailRendering: 'thumbnail',
        thumbnailRequestStrategy: 'fetch',
        enableStudyLazyLoad: true,
        staticWado: false,
        singlepart: 'bulkdata,video',
        // BulkDataURIs in dwdaemon's metadata are absolute URLs.
        bulkDataURI: { enabled: true },
        omitQuotationForMultipartRequest: true,
        dicomUploadEnabled: true,
      },
    },
  ],
  httpErrorHandler: error => {
    console.warn('dwdaemon request failed', error.status);
  },
};
