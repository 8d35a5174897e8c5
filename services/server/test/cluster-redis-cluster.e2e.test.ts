import { clusterSuite } from './support/cluster-suite.js';

clusterSuite('cluster');
