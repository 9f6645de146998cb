// Simulation model of the Lattice ECP5 DP16KD block RAM (18 kbit) as rep-accel instantiates
// it (rep_accel/families/ecp5.py registered_block_ram, `rep-accel rtl --dsp ecp5`), wired as
// Yosys' own mapping wires it (share/lattice/brams_map_16kd.v):
//   DATA_WIDTH_A = DATA_WIDTH_B = 9: 2048 words of 9 bits, address AD[13:3], data DI/DO[8:0];
//     each port reads and writes (CE, WE) on its clock, WRITEMODE NORMAL (the read data
//     holds), WRITETHROUGH (it is the new word) or READBEFOREWRITE (the old word).
//   DATA_WIDTH_A = DATA_WIDTH_B = 36 (pseudo dual port): 512 words of 36 bits; port A writes
//     {DIB, DIA} at ADA[13:5] with byte enables ADA[3:0] (when WEA and CEA), port B reads
//     the word at ADB[13:5] onto {DOB, DOA} (when CEB; WEB must be low); its output
//     register follows REGMODE_B and OCEB (nextpnr's PDPW16KD: OCER is OCEB).
//   REGMODE_x = NOREG: DOx is the read latch; OUTREG: one more register, loaded when OCEx,
//     so the word read at a clock edge is on DOx after the next one.
// A read on one port of a word the other port writes at the same edge is undefined in the
// block RAM: the model reads X there. Memory and registers start at zero (the INITVAL
// defaults). Chip selects, resets and other widths are not modelled and stop the
// simulation. (Give this file to simulators, never to synthesis: Yosys knows DP16KD.)
`default_nettype none
// String parameters compared with other strings: widths differ by design.
/* verilator lint_off WIDTHEXPAND */
module DP16KD (
    input  wire DIA17, DIA16, DIA15, DIA14, DIA13, DIA12, DIA11, DIA10, DIA9,
    input  wire DIA8, DIA7, DIA6, DIA5, DIA4, DIA3, DIA2, DIA1, DIA0,
    input  wire ADA13, ADA12, ADA11, ADA10, ADA9, ADA8, ADA7, ADA6, ADA5, ADA4, ADA3, ADA2, ADA1, ADA0,
    input  wire CEA, OCEA, CLKA, WEA, RSTA, CSA2, CSA1, CSA0,
    output wire DOA17, DOA16, DOA15, DOA14, DOA13, DOA12, DOA11, DOA10, DOA9,
    output wire DOA8, DOA7, DOA6, DOA5, DOA4, DOA3, DOA2, DOA1, DOA0,
    input  wire DIB17, DIB16, DIB15, DIB14, DIB13, DIB12, DIB11, DIB10, DIB9,
    input  wire DIB8, DIB7, DIB6, DIB5, DIB4, DIB3, DIB2, DIB1, DIB0,
    input  wire ADB13, ADB12, ADB11, ADB10, ADB9, ADB8, ADB7, ADB6, ADB5, ADB4, ADB3, ADB2, ADB1, ADB0,
    input  wire CEB, OCEB, CLKB, WEB, RSTB, CSB2, CSB1, CSB0,
    output wire DOB17, DOB16, DOB15, DOB14, DOB13, DOB12, DOB11, DOB10, DOB9,
    output wire DOB8, DOB7, DOB6, DOB5, DOB4, DOB3, DOB2, DOB1, DOB0
);
    parameter DATA_WIDTH_A = 9;    // (the primitive's default is 18; 9 lets the model elaborate alone)
    parameter DATA_WIDTH_B = 9;
    parameter REGMODE_A = "NOREG";
    parameter REGMODE_B = "NOREG";
    parameter WRITEMODE_A = "NORMAL";
    parameter WRITEMODE_B = "NORMAL";
    parameter CSDECODE_A = "0b000";
    parameter CSDECODE_B = "0b000";
    parameter CLKAMUX = "CLKA";
    parameter CLKBMUX = "CLKB";
    // The primitive's other settings: accepted (the instance sets them), not modelled.
    /* verilator lint_off UNUSEDPARAM */
    parameter RESETMODE = "SYNC";
    parameter ASYNC_RESET_RELEASE = "SYNC";
    parameter GSR = "ENABLED";
    /* verilator lint_on UNUSEDPARAM */

    localparam WIDE = DATA_WIDTH_A == 36;
    localparam SUPPORTED =
        DATA_WIDTH_A == DATA_WIDTH_B && (DATA_WIDTH_A == 9 || DATA_WIDTH_A == 36) &&
        (REGMODE_A == "NOREG" || REGMODE_A == "OUTREG") && (REGMODE_B == "NOREG" || REGMODE_B == "OUTREG") &&
        (!WIDE || REGMODE_A == REGMODE_B) &&
        CSDECODE_A == "0b000" && CSDECODE_B == "0b000" && CLKAMUX == "CLKA" && CLKBMUX == "CLKB";
    initial begin
        if (!SUPPORTED) begin
            $display("DP16KD model: only 9- and 36-bit modes, NOREG/OUTREG, chip select 0b000 are modelled");
            $finish;
        end
    end

    wire [17:0] dia = {DIA17, DIA16, DIA15, DIA14, DIA13, DIA12, DIA11, DIA10, DIA9,
                       DIA8, DIA7, DIA6, DIA5, DIA4, DIA3, DIA2, DIA1, DIA0};
    wire [17:0] dib = {DIB17, DIB16, DIB15, DIB14, DIB13, DIB12, DIB11, DIB10, DIB9,
                       DIB8, DIB7, DIB6, DIB5, DIB4, DIB3, DIB2, DIB1, DIB0};
    wire [13:0] ada = {ADA13, ADA12, ADA11, ADA10, ADA9, ADA8, ADA7, ADA6, ADA5, ADA4, ADA3, ADA2, ADA1, ADA0};
    wire [13:0] adb = {ADB13, ADB12, ADB11, ADB10, ADB9, ADB8, ADB7, ADB6, ADB5, ADB4, ADB3, ADB2, ADB1, ADB0};

    // 2048 words of 9 bits; a 36-bit word w is words 4w .. 4w+3 (byte k = bits 9k+8:9k).
    // Written from both ports' clocks: a true dual-port memory.
    /* verilator lint_off MULTIDRIVEN */
    reg [8:0] mem [0:2047];
    /* verilator lint_on MULTIDRIVEN */
    integer i;
    initial for (i = 0; i < 2048; i = i + 1) mem[i] = 9'd0;

    reg [17:0] latch_a = 18'd0, latch_b = 18'd0, out_a = 18'd0, out_b = 18'd0;
    reg [35:0] latch_w = 36'd0, out_w = 36'd0;   // 36-bit mode: port B's read
    wire [10:0] word_a = ada[13:3];
    wire [10:0] word_b = adb[13:3];
    wire [10:0] base_a = {ada[13:5], 2'b00};
    wire [10:0] base_b = {adb[13:5], 2'b00};
    wire [35:0] di = {dib, dia};
    wire writes_a = CEA && WEA;
    wire writes_b = CEB && WEB;
    integer k;

    always @(posedge CLKA) begin
        if (RSTA || CSA2 || CSA1 || CSA0) begin
            $display("DP16KD model: RSTA and CSA are not modelled (tie them low)");
            $finish;
        end
        if (WIDE) begin
            for (k = 0; k < 4; k = k + 1)
                if (writes_a && ada[k]) mem[base_a + k[10:0]] <= di[9 * k +: 9];
        end else if (CEA) begin
            if (WEA) mem[word_a] <= dia[8:0];
            if (!WEA || WRITEMODE_A == "READBEFOREWRITE")
                latch_a <= {9'd0, (writes_b && word_b == word_a) ? 9'bx : mem[word_a]};
            else if (WRITEMODE_A == "WRITETHROUGH")
                latch_a <= {9'd0, dia[8:0]};
        end
        if (!WIDE && OCEA) out_a <= latch_a;
    end

    always @(posedge CLKB) begin
        if (RSTB || CSB2 || CSB1 || CSB0 || (WIDE && writes_b)) begin
            $display("DP16KD model: RSTB, CSB and (36-bit mode) WEB are not modelled (tie them low)");
            $finish;
        end
        if (WIDE) begin
            if (CEB)
                for (k = 0; k < 4; k = k + 1)
                    latch_w[9 * k +: 9] <= (writes_a && ada[k] && base_a == base_b) ? 9'bx : mem[base_b + k[10:0]];
            if (OCEB) out_w <= latch_w;
        end else begin
            if (CEB) begin
                if (WEB) mem[word_b] <= dib[8:0];
                if (!WEB || WRITEMODE_B == "READBEFOREWRITE")
                    latch_b <= {9'd0, (writes_a && word_a == word_b) ? 9'bx : mem[word_b]};
                else if (WRITEMODE_B == "WRITETHROUGH")
                    latch_b <= {9'd0, dib[8:0]};
            end
            if (OCEB) out_b <= latch_b;
        end
    end

    wire [17:0] doa = WIDE ? (REGMODE_B == "OUTREG" ? out_w[17:0] : latch_w[17:0])
                           : (REGMODE_A == "OUTREG" ? out_a : latch_a);
    wire [17:0] dob = WIDE ? (REGMODE_B == "OUTREG" ? out_w[35:18] : latch_w[35:18])
                           : (REGMODE_B == "OUTREG" ? out_b : latch_b);
    assign {DOA17, DOA16, DOA15, DOA14, DOA13, DOA12, DOA11, DOA10, DOA9,
            DOA8, DOA7, DOA6, DOA5, DOA4, DOA3, DOA2, DOA1, DOA0} = doa;
    assign {DOB17, DOB16, DOB15, DOB14, DOB13, DOB12, DOB11, DOB10, DOB9,
            DOB8, DOB7, DOB6, DOB5, DOB4, DOB3, DOB2, DOB1, DOB0} = dob;
endmodule
/* verilator lint_on WIDTHEXPAND */
`default_nettype wire
